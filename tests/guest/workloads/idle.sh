#!/bin/sh
# idle: do nothing. The guest only runs qemu-ga.
while :; do
	sleep 3600
done
