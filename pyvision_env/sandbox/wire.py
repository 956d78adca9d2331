"""The byte format between the host and a sandbox worker: framed JSON headers plus raw buffers."""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any, Sequence

import numpy as np

from pyvision_env.sandbox.base import CellError, CellResult, CellStatus

_PREFIX = struct.Struct("<IQ")
_MAX_HEADER = 64 * 1024 * 1024
_CHUNK = 64 * 1024
_TIMEVAL = struct.Struct("@ll")
_NO_TIMEOUT = _TIMEVAL.pack(0, 0)


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

    where `header["buffers"]` lists each buffer's length. Reads take a deadline, so a worker that
    sends half a frame and stops cannot hang the host.
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

    def send(self, header: dict[str, Any], buffers: Sequence[Any] = ()) -> None:
        """Send one frame; `buffers` are bytes-like objects (e.g. contiguous arrays)."""
        views = [memoryview(buffer).cast("B") for buffer in buffers]
        header = dict(header, buffers=[len(view) for view in views])
        encoded = json.dumps(header).encode()
        try:
            self.sock.sendall(_PREFIX.pack(len(encoded), sum(len(v) for v in views)) + encoded)
            for view in views:
                self.sock.sendall(view)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

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
            sizes = [int(size) for size in header.pop("buffers")]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ChannelCorrupt(f"malformed frame header: {exc}") from None
        if sum(sizes) != total or min(sizes, default=0) < 0:
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


def unpack_arrays(shapes: Any, buffers: Sequence[bytearray]) -> list[np.ndarray]:
    """The inverse of `pack_arrays`, checking every shape against its buffer."""
    if not isinstance(shapes, list) or len(shapes) != len(buffers):
        raise ChannelCorrupt("array shapes do not match the buffers")
    arrays = []
    for shape, buffer in zip(shapes, buffers):
        if not (isinstance(shape, list) and 2 <= len(shape) <= 3
                and all(isinstance(n, int) and n > 0 for n in shape)
                and int(np.prod(shape)) == len(buffer)):
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
            "stderr": result.stderr, "error": error, "figures": shapes,
            "duration": result.duration}, buffers


def decode_result(header: dict[str, Any], buffers: Sequence[bytearray], *, max_output: int,
                  max_figures: int, max_figure_pixels: int, duration: float = 0.0) -> CellResult:
    """Rebuild a `CellResult` from an untrusted worker, enforcing the limits again.

    Raises:
        ChannelCorrupt: the header is not a result, or a figure breaks the limits.
    """
    try:
        status = CellStatus(header["status"])
        if status not in (CellStatus.OK, CellStatus.ERROR):  # only the host decides the others
            raise ValueError(f"a worker cannot report status {status.value!r}")
        stdout, stderr = str(header["stdout"])[:max_output], str(header["stderr"])[:max_output]
        raw = header["error"]
        error = None if raw is None else CellError(
            str(raw["name"]), str(raw["value"]), str(raw["traceback"])[:max_output])
    except (KeyError, TypeError, ValueError) as exc:
        raise ChannelCorrupt(f"malformed cell result: {exc!r}") from None
    figures = unpack_arrays(header.get("figures"), buffers)
    for figure in figures:
        height, width = figure.shape[:2]
        if figure.ndim != 3 or figure.shape[2] != 3 or height * width > max_figure_pixels:
            raise ChannelCorrupt(f"figure of shape {figure.shape} breaks the figure limits")
    return CellResult(status=status, stdout=stdout, stderr=stderr, error=error,
                      figures=tuple(figures[:max_figures]), duration=duration)
