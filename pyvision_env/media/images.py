"""Image loading: any file or PIL image to an RGB picture or a uint8 array."""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageLike = Union[Path, str, Image.Image]

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_EIGHT_BIT_MAX = 255
_SIXTEEN_BIT_TO_EIGHT = 257  # 65535 / 255
CACHE_BYTES = 256 * 1024 * 1024  # decoded images kept by `cached_array`, least recently used out


def load_image(src: ImageLike) -> Image.Image:
    """Return `src` as a new RGB `PIL.Image`, fully read into memory.

    Colour handling matches what PyVision's pipelines do (`Image.open(p).convert("RGB")`):
    alpha is dropped, palette and grayscale images are expanded to RGB. High-bit-depth
    grayscale is scaled into 0..255 rather than clipped: 16-bit modes (`I;16*`) are
    divided by 257; 32-bit integer mode `I` the same when its values exceed 255;
    float mode `F` is multiplied by 255 when its values lie in 0..1, else clipped.
    EXIF orientation is not applied (PyVision's models were trained without it).

    Raises:
        FileNotFoundError: `src` is a path to no file; the message names the path.
        ValueError: the file exists but is not a readable image; the message names the path.
    """
    if isinstance(src, Image.Image):
        return _to_rgb(src)
    path = Path(src).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as opened:
            opened.load()
            return _to_rgb(opened)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def to_array(img: ImageLike) -> np.ndarray:
    """Return the image as a fresh C-contiguous `uint8` array of shape (height, width, 3)."""
    rgb = load_image(img)
    return np.ascontiguousarray(np.array(rgb, dtype=np.uint8, copy=True))


def cached_array(src: ImageLike) -> np.ndarray:
    """`to_array(src)` as a read-only array, decoded once and then shared while it stays cached.

    Episodes of the same task reuse the decoded pixels instead of decoding (and copying) the
    image again at every reset. A file is known by its path, size, inode and modification time,
    so a rewritten file is decoded afresh; a `PIL.Image` by identity while it is alive (task
    images are taken as immutable, as `Task` is). At most `CACHE_BYTES` of pixels are kept.
    The array is read-only: writing to it raises, so no holder can change another's pixels.
    """
    key, alive = _cache_key(src)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0]() is alive:
            _cache.move_to_end(key)
            return hit[1]
    array = to_array(src)
    array.flags.writeable = False
    if array.nbytes <= CACHE_BYTES:
        with _cache_lock:
            _cache[key] = (weakref.ref(alive) if alive is not None else _none, array)
            global _cached_bytes
            _cached_bytes += array.nbytes - (hit[1].nbytes if hit is not None else 0)
            while _cached_bytes > CACHE_BYTES:
                _cached_bytes -= _cache.popitem(last=False)[1][1].nbytes
    return array


_cache: OrderedDict[Any, tuple[Any, np.ndarray]] = OrderedDict()
_cache_lock = threading.Lock()
_cached_bytes = 0


def _none() -> None:
    return None


def _cache_key(src: ImageLike) -> tuple[Any, Image.Image | None]:
    """(key, the object that must still be alive for a hit: the image itself, or None)."""
    if isinstance(src, Image.Image):
        return ("image", id(src)), src
    path = Path(src).expanduser()
    try:
        stat = path.stat()
    except OSError:  # `to_array` raises the clear error
        return ("missing", str(path)), None
    return ("file", os.path.abspath(path), stat.st_dev, stat.st_ino, stat.st_size,
            stat.st_mtime_ns), None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert one image of any Pillow mode to a new RGB image."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        return Image.fromarray(_deep_gray_to_uint8(img)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    return img.convert("RGB")


def _deep_gray_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float grayscale image into uint8."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * _EIGHT_BIT_MAX
    elif img.mode in _SIXTEEN_BIT_MODES or (values.size and values.max() > _EIGHT_BIT_MAX):
        values = values / _SIXTEEN_BIT_TO_EIGHT
    return np.clip(np.rint(values), 0, _EIGHT_BIT_MAX).astype(np.uint8)
