"""Image loading: any file or PIL image to an RGB picture or a uint8 array."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageLike = Union[Path, str, Image.Image]

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_EIGHT_BIT_MAX = 255
_SIXTEEN_BIT_TO_EIGHT = 257  # 65535 / 255


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
