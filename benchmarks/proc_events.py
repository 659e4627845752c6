"""When processes exec'd, from the kernel: Linux's process events connector (netlink).

A benchmark's way to see the instant a program starts (its ``execve`` done, before its
dynamic loader and ``main`` run) without asking the program: the kernel stamps each
``PROC_EVENT_EXEC`` with its monotonic clock. Needs root (``CAP_NET_ADMIN``); a kernel
without ``CONFIG_PROC_EVENTS`` says nothing, and :meth:`ExecWatch.open` raises.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections import defaultdict

_NETLINK_CONNECTOR = 11
_CN_IDX_PROC = 1
_CN_VAL_PROC = 1
_PROC_CN_MCAST_LISTEN = 1
_PROC_CN_MCAST_IGNORE = 2
_PROC_EVENT_EXEC = 0x00000002
_NLMSG_DONE = 3
_NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns (CLOCK_MONOTONIC)
_EXEC = struct.Struct("=ii")  # process_pid, process_tgid
_EVENT_AT = _NLMSG_HEADER.size + _CN_MSG.size


class ExecWatch:
    """Every exec the kernel reports while it runs: pid -> wall-clock times (seconds)."""

    def __init__(self) -> None:
        self.execs: defaultdict[int, list[float]] = defaultdict(list)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: str | None = None
        # The events' clock is CLOCK_MONOTONIC: its offset to the wall clock, now.
        self._offset = time.time() - time.monotonic()

    def open(self) -> None:
        """Start listening (raises OSError without root or without the connector)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_CONNECTOR)
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: no event lost
            sock.bind((os.getpid(), _CN_IDX_PROC))
            sock.send(_request(_PROC_CN_MCAST_LISTEN))
            sock.settimeout(0.2)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._thread = threading.Thread(target=self._listen, name="exec-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening; raise if the kernel dropped events meanwhile (the figures would
        miss some)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._socket is not None:
            try:
                self._socket.send(_request(_PROC_CN_MCAST_IGNORE))
            finally:
                self._socket.close()
        if self._error is not None:
            raise RuntimeError(self._error)

    def last_exec(self, pid: int, after: float, before: float) -> float | None:
        """The last exec of ``pid`` between two wall-clock times, if any."""
        times = [t for t in self.execs.get(pid, ()) if after <= t <= before]
        return max(times) if times else None

    def _listen(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError as error:  # ENOBUFS: events were dropped
                self._error = f"the kernel dropped process events: {error}"
                continue
            at = 0
            while at + _NLMSG_HEADER.size <= len(data):
                length = _NLMSG_HEADER.unpack_from(data, at)[0]
                if length < _NLMSG_HEADER.size:
                    break
                event = at + _EVENT_AT
                if event + _EVENT.size + _EXEC.size <= at + length:
                    what, _cpu, stamp = _EVENT.unpack_from(data, event)
                    if what == _PROC_EVENT_EXEC:
                        pid = _EXEC.unpack_from(data, event + _EVENT.size)[0]
                        self.execs[pid].append(stamp / 1e9 + self._offset)
                at += (length + 3) & ~3


def _request(op: int) -> bytes:
    body = struct.pack("=I", op)
    message = _CN_MSG.pack(_CN_IDX_PROC, _CN_VAL_PROC, 0, 0, len(body), 0) + body
    header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(message), _NLMSG_DONE, 0, 0, os.getpid())
    return header + message
