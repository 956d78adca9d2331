"""The byte format between the host and a sandbox worker: framed JSON headers plus raw buffers."""

from __future__ import annotations

import fcntl
import json
import math
import mmap
import os
import re
import select
import socket
import struct
import threading
import time
import weakref
from typing import Any, Sequence

import numpy as np

from pyvision_env.sandbox.base import CellError, CellResult, CellStatus, Cut

_PREFIX = struct.Struct("<IQ")
_MAX_HEADER = 64 * 1024 * 1024
_MAX_NOTES = 64
_NO_CUT = Cut()
_WORKER_STATUSES = {"ok": CellStatus.OK, "error": CellStatus.ERROR}
_CHUNK = 64 * 1024
_TIMEVAL = struct.Struct("@ll")
_NO_TIMEOUT = _TIMEVAL.pack(0, 0)
_FDS_PER_MESSAGE = 200  # SCM_RIGHTS takes at most 253 descriptors a message
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class ChannelClosed(ConnectionError):
    """The other end closed the connection (or it broke)."""


class ChannelTimeout(TimeoutError):
    """No complete frame arrived before the deadline."""


class ChannelCorrupt(ValueError):
    """The bytes received are not a valid frame, or break a limit."""


class Channel:
    """One end of a connected stream socket, sending and receiving whole frames.

    Nothing here unpickles: the worker runs untrusted code, which can write anything to its end of
    the socket, so the host reads only a JSON header and raw `uint8` pixel buffers whose sizes it
    checks against its own limits. The same format runs across Python and numpy versions (the Docker
    image has Debian's). A frame is::

        u32 header length | u64 total buffer length | JSON header | buffer 0 | buffer 1 | ...

    where `header["buffers"]` lists each buffer's length. Every size is checked against the
    caller's limit before anything that size is allocated, and sends and reads take a deadline,
    so a worker that sends half a frame, floods the socket or stops reading cannot hang the host
    or make it allocate past its limits.
    """

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        self._pending = bytearray()  # bytes read past the end of the last frame part
        self._timed = False  # a receive timeout is set on the socket
        self._chunk = memoryview(bytearray(_CHUNK))

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, header: dict[str, Any], buffers: Sequence[Any] = (),
             deadline: float | None = None) -> None:
        """Send one frame by `deadline` (None waits forever); `buffers` are bytes-like objects.

        Raises:
            ChannelTimeout: the other end did not take the frame in time (it stopped reading).
            ChannelClosed: the connection broke.
        """
        views = [memoryview(buffer).cast("B") for buffer in buffers]
        header = dict(header, buffers=[len(view) for view in views])
        encoded = json.dumps(header).encode()
        first = _PREFIX.pack(len(encoded), sum(len(v) for v in views)) + encoded
        try:
            if deadline is None:
                self.sock.sendall(first)
                for view in views:
                    self.sock.sendall(view)
                return
            sent = 0
            if not views:  # the common small frame: one non-blocking send
                try:
                    sent = self.sock.send(first, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
                if sent == len(first):
                    return
            for part in [memoryview(first)[sent:], *views]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout("the frame could not be sent before the deadline")
                self.sock.settimeout(left)
                try:
                    self.sock.sendall(part)
                finally:
                    self.sock.settimeout(None)
        except socket.timeout:
            raise ChannelTimeout("the frame could not be sent before the deadline") from None
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

    def send_fds(self, fds: Sequence[int]) -> None:
        """Pass file descriptors, before any frame (the host's first message to a worker)."""
        chunks = [fds[i:i + _FDS_PER_MESSAGE] for i in range(0, len(fds), _FDS_PER_MESSAGE)]
        chunks = chunks or [[]]
        try:
            for index, chunk in enumerate(chunks):
                socket.send_fds(self.sock, [b"E" if index == len(chunks) - 1 else b"M"], chunk)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

    def recv_fds(self, deadline: float) -> list[int]:
        """The descriptors `send_fds` passed; nothing may have been received before."""
        fds: list[int] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise ChannelTimeout("no descriptors before the deadline")
            try:
                marker, received, _, _ = socket.recv_fds(self.sock, 1, _FDS_PER_MESSAGE)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            fds += received
            if marker == b"E":
                return fds
            if marker != b"M":
                for fd in fds:
                    os.close(fd)
                raise ChannelClosed("the connection was closed before the descriptors came")

    def recv(self, deadline: float | None = None,
             max_bytes: int | None = None) -> tuple[dict[str, Any], list[bytearray]]:
        """Receive one frame by `deadline` (a `time.monotonic()` value; None waits forever).

        Raises:
            ChannelTimeout: the deadline passed first.
            ChannelClosed: the other end closed the connection.
            ChannelCorrupt: the frame is malformed or larger than `max_bytes`.
        """
        header_len, total = _PREFIX.unpack(self._read(_PREFIX.size, deadline))
        if header_len > _MAX_HEADER or (max_bytes is not None and header_len + total > max_bytes):
            raise ChannelCorrupt(f"frame of {header_len + total} bytes is over the limit")
        try:
            header = json.loads(self._read(header_len, deadline))
            sizes = header.pop("buffers")
            if not isinstance(sizes, list) or not all(type(size) is int for size in sizes):
                raise TypeError("buffer sizes must be a list of integers")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise ChannelCorrupt(f"malformed frame header: {str(exc)[:200]}") from None
        if min(sizes, default=0) < 0 or sum(sizes) != total:
            raise ChannelCorrupt("frame buffer sizes do not add up")
        return header, [self._read(size, deadline) for size in sizes]

    def _read(self, size: int, deadline: float | None) -> bytearray:
        """Exactly `size` bytes. A small read takes whatever has arrived (up to `_CHUNK`), so a
        small frame costs one system call; a large buffer is received in place."""
        data = bytearray(size)
        got = min(size, len(self._pending))
        data[:got] = self._pending[:got]
        del self._pending[:got]
        view = memoryview(data)
        while got < size:
            if size - got < _CHUNK:
                count = self._receive_into(self._chunk, deadline)
                used = min(count, size - got)
                view[got:got + used] = self._chunk[:used]
                self._pending += self._chunk[used:count]
            else:
                used = self._receive_into(view[got:], deadline)
            got += used
        return data

    def _receive_into(self, target: memoryview, deadline: float | None) -> int:
        """Receive some bytes into `target`, waiting until `deadline` for the first of them.

        The wait is a blocking `recv` with a kernel receive timeout, not `select`: a reader
        blocked in `recv` is woken by the writer directly, which is much cheaper for a small
        round trip.
        """
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout("no complete frame before the deadline")
            seconds = int(left)
            micros = max(1, int((left - seconds) * 1e6))  # a zero timeval would mean forever
            self._set_timeout(_TIMEVAL.pack(seconds, micros))
        elif self._timed:
            self._set_timeout(_NO_TIMEOUT)
        try:
            count = self.sock.recv_into(target)
        except BlockingIOError:  # the receive timeout passed
            raise ChannelTimeout("no complete frame before the deadline") from None
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc
        if count == 0:
            raise ChannelClosed("the connection was closed")
        return count

    def _set_timeout(self, timeval: bytes) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc
        self._timed = timeval != _NO_TIMEOUT


# ---------------------------------------------------------------------------------------------
# Images and cell results
# ---------------------------------------------------------------------------------------------

def pack_arrays(arrays: Sequence[np.ndarray]) -> tuple[list[list[int]], list[np.ndarray]]:
    """uint8 arrays -> (their shapes, C-contiguous buffers) for `Channel.send`."""
    contiguous = [np.ascontiguousarray(array, dtype=np.uint8) for array in arrays]
    return [list(array.shape) for array in contiguous], contiguous


def sealed_memory(array: np.ndarray) -> int:
    """A read-only memfd holding `array`'s bytes, made once per array while it is alive.

    The episode's images reach a worker as these descriptors (`Channel.send_fds`), not through
    the socket: the worker maps them and builds its PIL images straight from the host's pages.
    Every seal is set (no write, no resize, no new seals), so no worker can change the pixels
    another episode will map; an array must not change while it is shared (the sandbox keeps
    read-only or private copies only). The descriptor is closed when the array is collected.
    """
    key = id(array)
    with _sealed_lock:
        hit = _sealed.get(key)
        if hit is not None and hit[0]() is array:
            return hit[1]
    data = memoryview(np.ascontiguousarray(array)).cast("B")
    fd = os.memfd_create("pyvision-image", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, max(1, len(data)))
        with mmap.mmap(fd, max(1, len(data))) as mapped:
            mapped[:len(data)] = data
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    with _sealed_lock:
        _sealed[key] = (weakref.ref(array), fd)
    weakref.finalize(array, _release_sealed, key, fd)
    return fd


_sealed: dict[int, tuple[Any, int]] = {}
_sealed_lock = threading.Lock()


def _release_sealed(key: int, fd: int) -> None:
    with _sealed_lock:
        if _sealed.get(key, (None, None))[1] == fd:
            del _sealed[key]
    os.close(fd)


def map_arrays(shapes: Any, fds: Sequence[int]) -> tuple[list[np.ndarray], list[mmap.mmap]]:
    """The worker's side of `sealed_memory`: read-only arrays over the descriptors (closed here),
    checking every shape against its memory, and the maps (close them when done)."""
    maps = []
    try:
        if not isinstance(shapes, list) or len(shapes) != len(fds):
            raise ChannelCorrupt("array shapes do not match the descriptors")
        for shape, fd in zip(shapes, fds):
            if not (isinstance(shape, list) and all(type(n) is int and n > 0 for n in shape)):
                raise ChannelCorrupt(f"bad array shape {shape!r}")
            if os.fstat(fd).st_size < math.prod(shape):
                raise ChannelCorrupt(f"array shape {shape!r} is larger than its memory")
            maps.append(mmap.mmap(fd, math.prod(shape), prot=mmap.PROT_READ))
    finally:
        for fd in fds:
            os.close(fd)
    return unpack_arrays(shapes, [memoryview(mapped) for mapped in maps]), maps


def unpack_arrays(shapes: Any, buffers: Sequence[Any]) -> list[np.ndarray]:
    """The inverse of `pack_arrays`, checking every shape against its buffer."""
    if not isinstance(shapes, list) or len(shapes) != len(buffers):
        raise ChannelCorrupt("array shapes do not match the buffers")
    arrays = []
    for shape, buffer in zip(shapes, buffers):
        if not (isinstance(shape, list) and 2 <= len(shape) <= 3
                and all(type(n) is int and n > 0 for n in shape)
                and math.prod(shape) == len(buffer)):
            raise ChannelCorrupt(f"bad array shape {shape!r} for {len(buffer)} bytes")
        arrays.append(np.frombuffer(buffer, dtype=np.uint8).reshape(shape))
    return arrays


def encode_result(result: CellResult) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A `CellResult` -> (header, buffers)."""
    shapes, buffers = pack_arrays(result.figures)
    error = None if result.error is None else {
        "name": result.error.name, "value": result.error.value,
        "traceback": result.error.traceback}
    return {"op": "result", "status": result.status.value, "stdout": result.stdout,
            "stderr": result.stderr, "stdout_cut": list(result.stdout_cut),
            "stderr_cut": list(result.stderr_cut), "error": error, "figures": shapes,
            "notes": list(result.notes)}, buffers


# Lone surrogates, and control characters other than tab and newline (C0, DEL, C1).
_UNSAFE_TEXT = re.compile("[\ud800-\udfff]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Valid UTF-8 without control characters: lone surrogates become U+FFFD, control characters
    other than newline and tab are removed (a carriage return too)."""
    if not text or (text.isascii() and text.isprintable()):  # the common case, fast
        return text
    return _UNSAFE_TEXT.sub(lambda match: "\ufffd" if match[0] >= "\ud800" else "", text)


def decode_result(header: dict[str, Any], buffers: Sequence[bytearray], *, max_output: int,
                  max_figures: int, max_figure_pixels: int, seq: int | None = None,
                  duration: float = 0.0) -> CellResult:
    """Rebuild a `CellResult` from an untrusted worker, checking everything against the limits.

    Text comes out clean (`clean_text`). A result that breaks a limit is not cut to fit: it is
    not one the worker would send, so it is refused.

    Raises:
        ChannelCorrupt: the header is not a result for request `seq`, or breaks a limit.
    """
    try:
        if header.get("op") != "result" or header.get("seq") != seq:
            raise ValueError(f"not the result of request {seq}")
        status = _WORKER_STATUSES.get(header["status"])
        if status is None:  # only the host decides the others
            raise ValueError(f"a worker cannot report status {str(header['status'])[:20]!r}")
        stdout, stdout_cut = _cut_text(header["stdout"], header["stdout_cut"], max_output)
        stderr, stderr_cut = _cut_text(header["stderr"], header["stderr_cut"], max_output)
        raw = header["error"]
        marked = max_output + 64  # the worker cut these with `truncate_middle`'s marker
        error = None if raw is None else CellError(
            _text(raw["name"], 256), _text(raw["value"], marked), _text(raw["traceback"], marked))
        notes = header["notes"]
        if not isinstance(notes, list) or len(notes) > _MAX_NOTES:
            raise ValueError("bad notes")
        notes = tuple([_text(note, 1024) for note in notes]) if notes else ()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ChannelCorrupt(f"malformed cell result: {str(exc)[:200]}") from None
    figures = unpack_arrays(header.get("figures"), buffers)
    if len(figures) > max_figures:
        raise ChannelCorrupt(f"{len(figures)} figures is over the limit of {max_figures}")
    for figure in figures:
        height, width = figure.shape[:2]
        if figure.ndim != 3 or figure.shape[2] != 3 or height * width > max_figure_pixels:
            raise ChannelCorrupt(f"figure of shape {figure.shape} breaks the figure limits")
    return CellResult(status=status, stdout=stdout, stderr=stderr, error=error,
                      figures=tuple(figures), duration=duration, stdout_cut=stdout_cut,
                      stderr_cut=stderr_cut, notes=notes)


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError("a text field is not a string within its limit")
    return clean_text(value)


def _cut_text(value: Any, cut: Any, limit: int) -> tuple[str, Cut]:
    """A captured stream and its cut, checked; the cut's index follows the cleaning."""
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError("a stream is not a string within its limit")
    if cut == [0, 0]:
        return clean_text(value), _NO_CUT
    if not (isinstance(cut, list) and len(cut) == 2 and all(type(n) is int for n in cut)
            and 0 <= cut[0] <= len(value) and cut[1] >= 0):
        raise ValueError(f"bad cut {str(cut)[:100]}")
    return clean_text(value), Cut(len(clean_text(value[:cut[0]])), cut[1])
