"""Video readers for the sandbox: a decord-compatible `VideoReader` with a frame cache.

Code cells get a video as `video_clue_k`, an object that behaves like
`decord.VideoReader` (`len(vr)`, `vr.get_avg_fps()`, `vr[i].asnumpy()`,
`vr.get_batch(indices).asnumpy()`, `vr.get_frame_timestamp(indices)`), plus a few
helpers (`frames_at`, `frame_at`, `contact_sheet`, `show`). Frames come from decord when
it is importable, else from PyAV; both sit behind one small backend interface. Decoded
frames are kept in a per-reader LRU cache bounded by bytes, so fetching a frame again
costs a copy, not a decode.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw

BACKENDS: tuple[str, ...] = ("decord", "pyav")
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
_INSTALL_HINT = "pip install 'pyvision-env[video]' (decord and av)"


class VideoError(ValueError):
    """A video file is missing, empty, truncated or cannot be decoded."""


@dataclass(frozen=True)
class VideoMeta:
    """What is known of a video without its frames (what a video prompt says about it).

    Attributes:
        width: frame width in pixels.
        height: frame height in pixels.
        num_frames: length of the video in frames.
        fps: average frames per second.
        duration: length in seconds.
    """

    width: int
    height: int
    num_frames: int
    fps: float
    duration: float


@dataclass(frozen=True)
class CacheInfo:
    """Counters of a reader's decoded-frame cache."""

    hits: int
    misses: int
    frames: int
    bytes: int
    max_bytes: int


class _Backend(Protocol):
    """What a decoder must offer: frame count, rate, size, timestamps, and batch reads."""

    num_frames: int
    fps: float
    width: int
    height: int

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decode frames at non-negative, sorted, unique `indices`: uint8 (N, H, W, 3)."""

    def timestamps(self) -> np.ndarray:
        """(num_frames, 2) float array of (start, end) seconds of each frame."""

    def close(self) -> None:
        """Release the file."""


# --------------------------------------------------------------------------- backends


class _DecordBackend:
    """Frames from `decord.VideoReader` (CPU)."""

    def __init__(self, path: Path) -> None:
        try:
            import decord
        except ImportError as exc:
            raise ImportError(f"the decord backend needs decord: {_INSTALL_HINT}") from exc
        try:
            self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
            height, width = self._vr[0].shape[:2]
        except (RuntimeError, AssertionError, decord.base.DECORDError) as exc:
            raise VideoError(f"cannot open video {str(path)!r}: {exc}") from exc
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())
        self.height, self.width = int(height), int(width)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        return self._vr.get_batch(list(indices)).asnumpy()

    def timestamps(self) -> np.ndarray:
        return np.asarray(self._vr.get_frame_timestamp(range(self.num_frames)), dtype=np.float64)

    def close(self) -> None:
        self._vr = None


class _PyAVBackend:
    """Frames from PyAV, with keyframe-aware random access.

    Frame count and index: at open, the video stream's packets are demuxed once
    (reading the file, not decoding it) to list every frame's presentation timestamp
    and which frames are keyframes. Frame i is the i-th smallest timestamp, which is
    exact even where the container's own frame count (`stream.frames`) is missing or
    wrong. Streams whose packets carry no timestamps at all are not supported here.

    Reads: sorted targets are decoded in one forward pass where the decoder can get
    from one to the next without passing a keyframe; otherwise it seeks to the
    keyframe at or before the next target (by timestamp) and decodes forward.
    """

    def __init__(self, path: Path) -> None:
        try:
            import av
        except ImportError as exc:
            raise ImportError(f"the pyav backend needs av: {_INSTALL_HINT}") from exc
        self._path = path
        try:
            self._container = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot open video {str(path)!r}: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"no video stream in {str(path)!r}")
        self._stream = self._container.streams.video[0]
        self._av_error = av.FFmpegError
        self._pts, self._keys = self._index_packets()
        self._index_of = {pts: i for i, pts in enumerate(self._pts)}
        self.num_frames = len(self._pts)
        self.width = int(self._stream.codec_context.width)
        self.height = int(self._stream.codec_context.height)
        self.fps = self._average_fps()
        self._next: int | None = None  # index the decoder yields next without a seek
        self._decoder = None

    def _index_packets(self) -> tuple[list[int], list[int]]:
        pts_list: list[int] = []
        key_pts: list[int] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is None:
                    raise VideoError(
                        f"{str(self._path)!r} has packets without timestamps; "
                        "the pyav backend cannot index it (try backend='decord')"
                    )
                pts_list.append(int(pts))
                if packet.is_keyframe:
                    key_pts.append(int(pts))
        except self._av_error as exc:
            raise VideoError(f"cannot read packets of {str(self._path)!r}: {exc}") from exc
        pts_list.sort()
        index_of = {pts: i for i, pts in enumerate(pts_list)}
        keys = sorted(index_of[pts] for pts in key_pts) or [0]
        return pts_list, keys

    def _average_fps(self) -> float:
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            return float(rate)
        if self.num_frames > 1 and self._stream.time_base:
            span = (self._pts[-1] - self._pts[0]) * float(self._stream.time_base)
            return (self.num_frames - 1) / span if span > 0 else 0.0
        return 0.0

    def timestamps(self) -> np.ndarray:
        base = float(self._stream.time_base)
        starts = (np.asarray(self._pts, dtype=np.float64) - self._pts[0]) * base
        step = 1.0 / self.fps if self.fps > 0 else 0.0
        ends = np.append(starts[1:], starts[-1] + step)
        return np.stack([starts, ends], axis=1)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.uint8)
        for slot, target in enumerate(indices):
            out[slot] = self._read_one(target)
        return out

    def _read_one(self, target: int) -> np.ndarray:
        key = self._keys[bisect.bisect_right(self._keys, target) - 1]
        if self._next is None or not (key <= self._next <= target):
            self._seek(key)
        frame = self._decode_until(target)
        if frame is None:  # the seek landed after the target: decode from the start
            self._seek(0)
            frame = self._decode_until(target)
        if frame is None:
            raise VideoError(f"frame {target} of {str(self._path)!r} could not be decoded (truncated file?)")
        return frame

    def _seek(self, index: int) -> None:
        self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._next = None

    def _decode_until(self, target: int) -> np.ndarray | None:
        """Decode forward to `target`; None if the decoder is already past it."""
        try:
            for frame in self._decoder:
                index = self._index_of.get(frame.pts)
                if index is None:
                    continue
                self._next = index + 1
                if index == target:
                    return frame.to_ndarray(format="rgb24")
                if index > target:
                    return None
        except self._av_error as exc:
            raise VideoError(f"decoding {str(self._path)!r} failed near frame {target}: {exc}") from exc
        self._next = None
        return None

    def close(self) -> None:
        self._decoder = None
        self._container.close()


def _make_backend(path: Path, backend: str | None) -> _Backend:
    if backend not in (None, *BACKENDS):
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if backend == "pyav":
        return _PyAVBackend(path)
    if backend == "decord":
        return _DecordBackend(path)
    try:
        import decord  # noqa: F401
    except ImportError:
        return _PyAVBackend(path)
    return _DecordBackend(path)


# --------------------------------------------------------------------------- frames


class FrameArray:
    """Frames returned by a reader, like decord's NDArray: call `.asnumpy()`."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def asnumpy(self) -> np.ndarray:
        """The frames as a uint8 numpy array: (H, W, 3) for one frame, (N, H, W, 3) for a batch."""
        return self._array

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self._array if dtype is None else self._array.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape

    def __len__(self) -> int:
        return len(self._array)

    def __repr__(self) -> str:
        return f"FrameArray(shape={self._array.shape}, dtype=uint8)"


class _FrameCache:
    """LRU map from frame index to read-only frame, bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, index: int) -> np.ndarray | None:
        frame = self._frames.get(index)
        if frame is None:
            self.misses += 1
            return None
        self.hits += 1
        self._frames.move_to_end(index)
        return frame

    def put(self, index: int, frame: np.ndarray) -> None:
        if frame.nbytes > self.max_bytes or index in self._frames:
            return
        frame.flags.writeable = False
        self._frames[index] = frame
        self.bytes += frame.nbytes
        while self.bytes > self.max_bytes:
            _, old = self._frames.popitem(last=False)
            self.bytes -= old.nbytes

    def __len__(self) -> int:
        return len(self._frames)


# --------------------------------------------------------------------------- reader


class VideoReader:
    """A decord-compatible video reader with a decoded-frame cache.

    Indexing follows `decord.VideoReader`: `vr[i]` with `-len(vr) <= i < len(vr)`
    (negative counts from the end), `vr[a:b:c]` a batch, anything else out of range
    raises `IndexError`. Returned arrays are fresh copies the caller may modify.

    Build one with `open_video(path)`.
    """

    def __init__(self, backend: _Backend, path: str | Path = "", cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._backend = backend
        self.path = Path(path)
        self._cache = _FrameCache(cache_bytes)
        self._timestamps: np.ndarray | None = None

    # -- decord API ---------------------------------------------------------------

    def __len__(self) -> int:
        return self._backend.num_frames

    def get_avg_fps(self) -> float:
        """Average frames per second."""
        return self._backend.fps

    def __getitem__(self, idx: int | slice) -> FrameArray:
        if isinstance(idx, slice):
            return self.get_batch(range(*idx.indices(len(self))))
        if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool):
            raise TypeError(
                f"frame index must be an int or a slice, got {type(idx).__name__}; "
                "use get_batch(indices) for a list of indices"
            )
        return FrameArray(self._read([self._check_index(int(idx))])[0])

    def get_batch(self, indices: Iterable[int] | np.ndarray) -> FrameArray:
        """Frames at `indices` (negative allowed) as one (N, H, W, 3) batch."""
        checked = [self._check_index(i) for i in self._as_index_list(indices)]
        return FrameArray(self._read(checked))

    def get_frame_timestamp(self, idx: int | slice | Iterable[int]) -> np.ndarray:
        """(start, end) seconds of frames: shape (2,) for an int, (N, 2) for several."""
        table = self._frame_times()
        if isinstance(idx, slice):
            return table[list(range(*idx.indices(len(self))))]
        if isinstance(idx, (int, np.integer)):
            return table[self._check_index(int(idx))]
        return table[[self._check_index(i) for i in self._as_index_list(idx)]]

    # -- helpers ------------------------------------------------------------------

    @property
    def width(self) -> int:
        return self._backend.width

    @property
    def height(self) -> int:
        return self._backend.height

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(num_frames, height, width, 3)."""
        return (len(self), self.height, self.width, 3)

    @property
    def duration(self) -> float:
        """Length in seconds: number of frames over the average fps."""
        fps = self.get_avg_fps()
        return len(self) / fps if fps > 0 else 0.0

    @property
    def meta(self) -> VideoMeta:
        return VideoMeta(self.width, self.height, len(self), self.get_avg_fps(), self.duration)

    def index_at(self, second: float) -> int:
        """Index of the frame on screen at `second` (0 <= second <= duration)."""
        if not (0.0 <= second <= self.duration + 1e-9):
            raise IndexError(
                f"time {second} s is outside video {self.path.name!r} (valid: 0 to {self.duration:.3f} s)"
            )
        starts = self._frame_times()[:, 0]
        index = int(np.searchsorted(starts, second + 1e-6, side="right")) - 1
        return min(max(index, 0), len(self) - 1)

    def frame_at(self, second: float) -> np.ndarray:
        """The frame on screen at `second`, as a (H, W, 3) uint8 array."""
        return self[self.index_at(second)].asnumpy()

    def frames_at(self, seconds: Sequence[float]) -> np.ndarray:
        """Frames on screen at each of `seconds`, as one (N, H, W, 3) uint8 array."""
        return self.get_batch([self.index_at(s) for s in seconds]).asnumpy()

    def contact_sheet(self, indices: Sequence[int], cols: int = 4, labels: bool = True) -> Image.Image:
        """Several frames in one image, in a grid, each labelled with index and timestamp."""
        indices = [self._check_index(i) for i in self._as_index_list(indices)]
        if not indices:
            raise ValueError("contact_sheet needs at least one frame index")
        frames = self._read(indices)
        return _grid(frames, indices, self._frame_times()[indices, 0] if labels else None, cols)

    def show(self, indices: Sequence[int], cols: int = 4) -> None:
        """Show a contact sheet of `indices` with matplotlib (`plt.show()` is called)."""
        import matplotlib.pyplot as plt

        sheet = self.contact_sheet(indices, cols=cols)
        plt.figure(figsize=(sheet.width / 100, sheet.height / 100), dpi=100)
        plt.imshow(sheet)
        plt.axis("off")
        plt.show()

    def cache_info(self) -> CacheInfo:
        """Hits, misses, frames and bytes held by the decoded-frame cache."""
        c = self._cache
        return CacheInfo(c.hits, c.misses, len(c), c.bytes, c.max_bytes)

    def close(self) -> None:
        """Release the file and the cached frames."""
        self._backend.close()
        self._cache = _FrameCache(self._cache.max_bytes)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VideoReader({self.path.name!r}, frames={len(self)}, fps={self.get_avg_fps():.3f}, "
            f"size={self.width}x{self.height})"
        )

    # -- internals ----------------------------------------------------------------

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(
                f"frame index {index} out of range for video {self.path.name!r} with {n} frames "
                f"(valid: {-n} to {n - 1})"
            )
        return index + n if index < 0 else index

    @staticmethod
    def _as_index_list(indices: Iterable[int] | np.ndarray) -> list[int]:
        array = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"frame indices must be integers, got dtype {array.dtype}")
        return [int(i) for i in array.reshape(-1)]

    def _frame_times(self) -> np.ndarray:
        if self._timestamps is None:
            self._timestamps = self._backend.timestamps()
        return self._timestamps

    def _read(self, indices: list[int]) -> np.ndarray:
        """Frames at checked indices, from the cache where possible, as a fresh array."""
        found: dict[int, np.ndarray] = {}
        for index in dict.fromkeys(indices):
            frame = self._cache.get(index)
            if frame is not None:
                found[index] = frame
        missing = sorted(set(indices) - found.keys())
        if missing:
            decoded = self._backend.read(missing)
            for index, frame in zip(missing, decoded):
                frame = np.ascontiguousarray(frame)
                found[index] = frame
                self._cache.put(index, frame)
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.uint8)
        for slot, index in enumerate(indices):
            out[slot] = found[index]
        return out


def _grid(frames: np.ndarray, indices: list[int], starts: np.ndarray | None, cols: int) -> Image.Image:
    """Tile frames into rows of `cols`, scaled so the sheet is at most ~1280 px wide."""
    cols = max(1, min(cols, len(frames)))
    rows = math.ceil(len(frames) / cols)
    height, width = frames.shape[1:3]
    scale = min(1.0, 1280 / (cols * width))
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    label_h = 16 if starts is not None else 0
    gap = 4
    sheet = Image.new("RGB", (cols * (tile_w + gap) - gap, rows * (tile_h + label_h + gap) - gap), "white")
    draw = ImageDraw.Draw(sheet)
    for k, frame in enumerate(frames):
        x, y = (k % cols) * (tile_w + gap), (k // cols) * (tile_h + label_h + gap)
        tile = Image.fromarray(frame)
        if scale < 1.0:
            tile = tile.resize((tile_w, tile_h), Image.BILINEAR)
        sheet.paste(tile, (x, y + label_h))
        if starts is not None:
            draw.text((x + 2, y + 2), f"#{indices[k]}  t={starts[k]:.2f}s", fill="black")
    return sheet


# --------------------------------------------------------------------------- opening


def open_video(
    path: str | Path,
    backend: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> VideoReader:
    """Open a video for random frame access.

    The file is checked now rather than at the first fetch: it must exist, be
    non-empty, report at least one frame, and decode its first and last frames
    (the last catches files cut short after their index).

    Args:
        path: the video file.
        backend: "decord", "pyav", or None for decord when importable, else PyAV.
        cache_bytes: bound on the decoded frames kept in memory (0 disables the cache).

    Raises:
        VideoError: the file is missing, empty, truncated or cannot be decoded.
        ImportError: the chosen backend is not installed (the message says what to install).
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video file not found: {str(path)!r}")
    if path.stat().st_size == 0:
        raise VideoError(f"video file is empty (0 bytes): {str(path)!r}")
    reader = VideoReader(_make_backend(path, backend), path, cache_bytes)
    try:
        _probe(reader)
    except VideoError:
        reader.close()
        raise
    return reader


def _probe(reader: VideoReader) -> None:
    path = str(reader.path)
    if len(reader) <= 0:
        raise VideoError(f"video {path!r} has no frames")
    if reader.width <= 0 or reader.height <= 0 or reader.get_avg_fps() <= 0:
        raise VideoError(
            f"video {path!r} has an invalid size or rate "
            f"({reader.width}x{reader.height} at {reader.get_avg_fps()} fps)"
        )
    try:
        reader.get_batch(sorted({0, len(reader) - 1}))
    except VideoError:
        raise
    except Exception as exc:  # decoder errors differ by backend
        raise VideoError(f"video {path!r} cannot be decoded: {exc}") from exc


def probe_video(path: str | Path, backend: str | None = None) -> VideoMeta:
    """Width, height, frame count, fps and duration of a video (checked as `open_video` does)."""
    with open_video(path, backend=backend, cache_bytes=0) as reader:
        return reader.meta
