#!/bin/sh
# shellcheck disable=SC2013
# records: cross-disk crash-consistency workload.
#
# For N = 1, 2, 3, ...: append "record N" to /mnt/vdb/log.txt and fsync it,
# then append "record N" to /mnt/vdc/log.txt and fsync it. Whatever point in
# time a disk state is captured at, a consistent capture of both disks has
# vdb's records 1..B and vdc's records 1..C with C <= B <= C + 1; record N on
# vdc without record N on vdb means the capture was not consistent.
#
# On disks that already hold records (reboot, restored snapshot) it checks
# the last records first (VIRTSNAP-RECORDS-FOUND vdb=B vdc=C; a violation
# prints VIRTSNAP-WORKLOAD-FAILED and stops), then continues the sequence.
#
# Kernel command line (optional): virtsnap.records_delay=SECONDS sleeps
# between records (default 0: as fast as the fsyncs go).
# Prints "VIRTSNAP-WORKLOAD-STARTED records from=N" and, every 100 records,
# "virtsnap-records: N" on the console.

a=/mnt/vdb/log.txt
b=/mnt/vdc/log.txt
if [ ! -d /mnt/vdb ] || [ ! -d /mnt/vdc ]; then
	echo "VIRTSNAP-WORKLOAD-FAILED records needs ext4 disks vdb and vdc mounted at /mnt/vdb and /mnt/vdc"
	exit 1
fi

delay=0
for arg in $(cat /proc/cmdline); do
	case $arg in
	virtsnap.records_delay=*) delay=${arg#*=} ;;
	esac
done

# Resume on disks that already hold records (say, a restored snapshot,
# after the kernel replayed the journals at mount): the logs must end in
# "record B" on vdb and "record C" on vdc with C <= B <= C + 1; an
# interrupted iteration (B = C + 1) is completed on vdc first.
last_record() { # FILE -> N of its last line "record N"; 0 if empty/missing; "bad" otherwise
	if [ ! -s "$1" ]; then
		echo 0
		return
	fi
	l=$(tail -n 1 "$1" | sed -n 's/^record \([0-9][0-9]*\)$/\1/p')
	echo "${l:-bad}"
}
lb=$(last_record "$a")
lc=$(last_record "$b")
echo "VIRTSNAP-RECORDS-FOUND vdb=$lb vdc=$lc"
if [ "$lb" = bad ] || [ "$lc" = bad ] || [ "$lc" -gt "$lb" ] || [ "$lb" -gt $((lc + 1)) ]; then
	echo "VIRTSNAP-WORKLOAD-FAILED records: inconsistent logs (last record vdb=$lb vdc=$lc)"
	exit 1
fi
if [ "$lb" -gt "$lc" ]; then
	echo "record $lb" >>"$b"
	sync "$b"
fi
n=$((lb + 1))
echo "VIRTSNAP-WORKLOAD-STARTED records from=$n"

while :; do
	echo "record $n" >>"$a"
	sync "$a"
	echo "record $n" >>"$b"
	sync "$b"
	[ $((n % 100)) -ne 0 ] || echo "virtsnap-records: $n"
	n=$((n + 1))
	[ "$delay" = 0 ] || sleep "$delay"
done
