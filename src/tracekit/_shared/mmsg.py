"""Many UDP datagrams in one system call (Linux ``recvmmsg``/``sendmmsg``), keeping the GIL.

Each ``socket.recv``/``sendto`` releases the GIL, and a background thread that moves one datagram
per call then waits for it behind whatever thread is computing, at every datagram:

* receiving (the sidecar): with one CPU-bound thread in the process, the one-``recv``-per-datagram
  listener took 56% of 80,000 datagrams/s and the kernel dropped the rest; with ``recvmmsg`` the same
  listener took all of them, at 120,000/s too;
* sending (the X-Ray span processor): the worker thread handed the GIL to the request thread at
  every document, so both threads paid a switch per request; with ``sendmmsg`` a whole batch leaves
  in one call.

The calls go through ``ctypes.PyDLL``, which keeps the GIL (harmless: ``MSG_DONTWAIT`` never
blocks). Elsewhere, or if a call is missing, the classes fall back to one call per datagram.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from itertools import accumulate, chain
from typing import Any

SLOTS = 64
"""Datagrams per call. Each slot is a 64 KB buffer (the largest datagram); only the pages that
datagrams touch become resident (about 256 KB for 1 KB documents, 4 MB at most)."""
SLOT_SIZE = 65536
MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def _libc(name: str, *argtypes: type) -> ctypes._NamedFuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        call: ctypes._NamedFuncPointer = getattr(ctypes.PyDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    call.restype = ctypes.c_int
    call.argtypes = list(argtypes)
    return call


def _libc_recvmmsg() -> ctypes._NamedFuncPointer | None:
    return _libc("recvmmsg", ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)


def _libc_sendmmsg() -> ctypes._NamedFuncPointer | None:
    return _libc("sendmmsg", ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)


class BatchReceiver:
    """``drain()``: the datagrams waiting on ``sock`` (at most :data:`SLOTS`), never blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._call = _libc_recvmmsg()
        if self._call is None:
            return
        self._buffer = bytearray(SLOTS * SLOT_SIZE)  # calloc'd: untouched pages are not resident
        self._view = memoryview(self._buffer)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._buffer))
        self._iovecs = (_Iovec * SLOTS)()
        self._messages = (_Mmsghdr * SLOTS)()
        for i in range(SLOTS):
            self._iovecs[i].base = base + i * SLOT_SIZE
            self._iovecs[i].len = SLOT_SIZE
            self._messages[i].hdr.iov = ctypes.pointer(self._iovecs[i])
            self._messages[i].hdr.iovlen = 1

    @property
    def batched(self) -> bool:
        """True when ``recvmmsg`` is in use."""
        return self._call is not None

    def drain(self) -> list[bytes]:
        if self._call is None:
            return self._drain_one_by_one()
        got = self._call(self._sock.fileno(), self._messages, SLOTS, MSG_DONTWAIT, None)
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return []
            if code == errno.ENOSYS:
                self._call = None
                return self._drain_one_by_one()
            raise OSError(code, os.strerror(code))
        view, messages = self._view, self._messages
        return [bytes(view[i * SLOT_SIZE : i * SLOT_SIZE + messages[i].len]) for i in range(got)]

    def _drain_one_by_one(self) -> list[bytes]:
        found: list[bytes] = []
        if not MSG_DONTWAIT:
            return found
        recv = self._sock.recv
        while len(found) < SLOTS:
            try:
                found.append(recv(SLOT_SIZE, MSG_DONTWAIT))
            except (BlockingIOError, InterruptedError):
                break
        return found


class BatchSender:
    """``send(sock, address, datagrams)``: as many of ``datagrams`` as the socket takes now, in as
    few calls as possible; returns how many left. Raises ``OSError`` as ``sendto`` would."""

    def __init__(self) -> None:
        self._call = _libc_sendmmsg()
        self._iovecs = (_Iovec * SLOTS)()
        self._iovec_bytes = memoryview(self._iovecs).cast("B")
        self._messages = (_Mmsghdr * SLOTS)()
        self._address: tuple[int, Any] | None = None
        self._name: ctypes.Array[ctypes.c_char] | None = None
        for i in range(SLOTS):
            self._messages[i].hdr.iov = ctypes.pointer(self._iovecs[i])
            self._messages[i].hdr.iovlen = 1

    def send(self, sock: socket.socket, address: tuple[int, Any], datagrams: list[bytes]) -> int:
        """``address`` is (family, socket address), as ``getaddrinfo`` gives them."""
        if self._call is None or address[0] not in (socket.AF_INET, socket.AF_INET6):
            return self._send_one_by_one(sock, address[1], datagrams)
        self._set_address(address)
        sent = 0
        while sent < len(datagrams):
            chunk = datagrams[sent : sent + SLOTS]
            blob = b"".join(chunk)  # one buffer: the iovecs are filled by one C call, not by ctypes
            self._point_at(blob, list(map(len, chunk)))
            got = self._call(sock.fileno(), self._messages, len(chunk), MSG_DONTWAIT)
            if got < 0:
                code = ctypes.get_errno()
                if code == errno.ENOSYS:
                    self._call = None
                    return sent + self._send_one_by_one(sock, address[1], datagrams[sent:])
                if sent:
                    return sent  # the caller counts the rest
                raise OSError(code, os.strerror(code))
            sent += got
            if got < len(chunk):
                break
        return sent

    def _point_at(self, blob: bytes, lengths: list[int]) -> None:
        """Each iovec at its datagram's bytes inside ``blob`` (which must outlive the call)."""
        base = ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p).value
        starts = accumulate(lengths, initial=base)  # one more than lengths: zip stops at lengths
        pairs = chain.from_iterable(zip(starts, lengths))  # noqa: B905
        struct.pack_into("PN" * len(lengths), self._iovec_bytes, 0, *pairs)

    def _set_address(self, address: tuple[int, Any]) -> None:
        if address == self._address:
            return
        name = _sockaddr(*address)
        pointer = ctypes.cast(name, ctypes.c_void_p)
        for message in self._messages:
            message.hdr.name, message.hdr.namelen = pointer, len(name)
        self._address, self._name = address, name  # the buffer lives as long as the pointers to it

    @staticmethod
    def _send_one_by_one(sock: socket.socket, address: Any, datagrams: list[bytes]) -> int:
        for sent, datagram in enumerate(datagrams):
            try:
                sock.sendto(datagram, address)
            except BlockingIOError:
                return sent
        return len(datagrams)


def _sockaddr(family: int, address: tuple[Any, ...]) -> ctypes.Array[ctypes.c_char]:
    """``struct sockaddr_in`` / ``sockaddr_in6`` for (family, (host, port[, flow, scope]))."""
    host, port, rest = address[0], address[1], list(address[2:])
    packed = socket.inet_pton(family, host)
    if family == socket.AF_INET:
        raw = struct.pack("=H", family) + struct.pack("!H", port) + packed + bytes(8)
    else:
        flow, scope = [*rest, 0, 0][:2]
        head = struct.pack("=H", family) + struct.pack("!HI", port, flow)
        raw = head + packed + struct.pack("=I", scope)
    return ctypes.create_string_buffer(raw, len(raw))
