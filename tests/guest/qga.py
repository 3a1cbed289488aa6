#!/usr/bin/env python3
"""Minimal clients for the test guest: qemu-guest-agent and QMP over unix
sockets, python3 stdlib only.

As a module (what smoke-test does):
    from qga import Qga, Qmp
    with Qga("/tmp/x/qga.sock") as ga:
        ga.sync()
        ga.execute("guest-ping")
        n = ga.execute("guest-fsfreeze-freeze")

As a command:
    qga.py SOCKET COMMAND [JSON-ARGUMENTS]        # guest agent
    qga.py --qmp SOCKET COMMAND [JSON-ARGUMENTS]  # QMP (after qmp_capabilities)
prints the "return" value as JSON; exits 1 with the error on stderr.

Guest agent protocol notes: QEMU's chardev socket is a plain byte pipe to
the guest's virtio-serial port, with no session. Anything a previous client
left half-sent sits in the agent's JSON parser and any reply nobody read sits
in the pipe. So a session starts by sending 0xFF (resets the agent's parser)
and guest-sync-delimited with a fresh id; the agent answers with 0xFF followed
by the reply; everything before the 0xFF, and replies with another id, are
stale and skipped.
"""

import json
import random
import socket
import sys
import time


class ProtocolError(Exception):
    pass


class CommandError(Exception):
    def __init__(self, command, error):
        super().__init__(f"{command}: {error.get('class', '?')}: {error.get('desc', error)}")
        self.command = command
        self.error = error


class _Conn:
    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for a reply")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise ProtocolError("connection closed")
        self.buf += data

    def _line(self, deadline):
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def _send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def _request(self, command, arguments, timeout):
        """Sends one command; returns the deadline of its reply."""
        deadline = time.monotonic() + (timeout or self.timeout)
        msg = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        self._send(msg)
        return deadline


class Qga(_Conn):
    def __init__(self, path, timeout=30.0):
        super().__init__(path, timeout)
        self.timeout = timeout

    def sync(self, timeout=None):
        """Starts a clean session: returns once the agent has answered a
        guest-sync-delimited with our id."""
        deadline = time.monotonic() + (timeout or self.timeout)
        sync_id = random.randint(1, 2**31 - 1)
        self.sock.sendall(b"\xff")
        self._send({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}})
        while True:
            while b"\xff" not in self.buf:
                self.buf = b""
                self._fill(deadline)
            self.buf = self.buf[self.buf.index(b"\xff") + 1:]
            line = self._line(deadline).strip()
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if reply.get("return") == sync_id:
                return

    def execute(self, command, arguments=None, timeout=None):
        deadline = self._request(command, arguments, timeout)
        while True:
            line = self._line(deadline).strip(b"\xff \r\t")
            if not line:
                continue
            reply = json.loads(line)
            if "error" in reply:
                raise CommandError(command, reply["error"])
            if "return" in reply:
                return reply["return"]


class Qmp(_Conn):
    def __init__(self, path, timeout=10.0):
        super().__init__(path, timeout)
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        greeting = json.loads(self._line(deadline))
        if "QMP" not in greeting:
            raise ProtocolError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def execute(self, command, arguments=None, timeout=None):
        deadline = self._request(command, arguments, timeout)
        while True:
            reply = json.loads(self._line(deadline))
            if "event" in reply:
                continue
            if "error" in reply:
                raise CommandError(command, reply["error"])
            if "return" in reply:
                return reply["return"]


def main(argv):
    qmp = False
    if argv and argv[0] == "--qmp":
        qmp = True
        argv = argv[1:]
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    path, command = argv[0], argv[1]
    arguments = json.loads(argv[2]) if len(argv) == 3 else None
    try:
        if qmp:
            with Qmp(path) as conn:
                result = conn.execute(command, arguments)
        else:
            with Qga(path) as conn:
                conn.sync()
                result = conn.execute(command, arguments)
    except (OSError, ProtocolError, CommandError, ValueError) as e:
        print(f"qga.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
