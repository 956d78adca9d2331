"""Writing numpy frames to an H.264 mp4 with PyAV (short GOPs, for fast random access)."""

from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

# Fixed encoder settings: one thread and a fixed preset keep the output bytes identical
# from run to run on the same machine, which is what lets generated clips be cached.
_X264_PRESET = "veryfast"
_X264_THREADS = "1"


def import_av():
    """PyAV, or an ImportError with the `pip install` line that brings it."""
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            "writing videos needs PyAV: pip install 'pyvision-env[video]' (or: pip install av)"
        ) from exc
    return av


def _check_frame(frame: np.ndarray, shape: tuple[int, ...] | None, index: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"frame {index}: expected a uint8 array of shape (H, W, 3), "
            f"got dtype {frame.dtype} and shape {frame.shape}"
        )
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frame {index}: shape {frame.shape} differs from the first frame's {shape}")
    height, width = frame.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(
            f"frame {index}: H.264 in yuv420p needs even width and height, got {width}x{height}; "
            "crop or pad the frames by one pixel"
        )
    return np.ascontiguousarray(frame)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    gop: int = 30,
    crf: int = 23,
) -> Path:
    """Encode RGB frames into an H.264 (libx264, yuv420p) video file.

    The file is written under a temporary name in the same folder and moved into place
    only when complete, so a killed or failed run never leaves a partial file at `path`.

    Args:
        path: the output file; the container follows the suffix (`.mp4` recommended).
        frames: uint8 arrays of shape (H, W, 3), all the same shape, H and W even.
        fps: frames per second (constant frame rate).
        gop: keyframe interval in frames. Short GOPs make random access cheap: a
            random frame costs decoding at most `gop` frames.
        crf: x264 constant rate factor (0 = lossless, 23 = default, 51 = worst).

    Returns:
        `path` as a `Path`.

    Raises:
        ValueError: on no frames, bad frame shapes or dtypes, or bad parameters.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if gop < 1:
        raise ValueError(f"gop must be at least 1, got {gop}")
    av = import_av()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        count = _encode(av, tmp, frames, Fraction(fps).limit_denominator(1001), gop, crf)
        if count == 0:
            raise ValueError("write_video got no frames")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _encode(av, tmp: Path, frames: Iterable[np.ndarray], rate: Fraction, gop: int, crf: int) -> int:
    count = 0
    shape: tuple[int, ...] | None = None
    with av.open(str(tmp), mode="w") as container:
        stream = None
        for count, frame in enumerate(frames, start=1):
            frame = _check_frame(frame, shape, count - 1)
            if stream is None:
                shape = frame.shape
                stream = _add_stream(container, rate, frame.shape[1], frame.shape[0], gop, crf)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            container.mux(stream.encode(video_frame))
        if stream is not None:
            container.mux(stream.encode(None))
    return count


def _add_stream(container, rate: Fraction, width: int, height: int, gop: int, crf: int):
    stream = container.add_stream("libx264", rate=rate)
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.options = {
        "crf": str(crf),
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "preset": _X264_PRESET,
        "threads": _X264_THREADS,
    }
    return stream
