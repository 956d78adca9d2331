"""Gymnasium spaces for free-form text and variable-size RGB images."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

# Printable characters used by `TextSpace.sample`: ASCII plus a few non-ASCII letters, so that
# random actions exercise unicode handling too.
_SAMPLE_ALPHABET = np.array(list(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n.,:;!?()[]{}<>=+-*/_'\"`#éüß漢字"
))


class TextSpace(spaces.Space[str]):
    """Any unicode string of at most `max_length` characters.

    Gymnasium's `Text` space only admits a fixed character set; model output and interpreter
    output can hold any character, so this space checks the type and the length only.
    """

    def __init__(self, max_length: int, seed: int | np.random.Generator | None = None):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = max_length
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        length = int(self.np_random.integers(0, min(self.max_length, 64) + 1))
        return "".join(self.np_random.choice(_SAMPLE_ALPHABET, size=length))

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, TextSpace) and other.max_length == self.max_length


class ImageSpace(spaces.Space[np.ndarray]):
    """An RGB `uint8` image of shape (H, W, 3) with 1 <= H <= max_height and 1 <= W <= max_width."""

    def __init__(self, max_height: int, max_width: int, seed: int | np.random.Generator | None = None):
        if max_height < 1 or max_width < 1:
            raise ValueError(f"max_height and max_width must be >= 1, got {max_height}x{max_width}")
        self.max_height = max_height
        self.max_width = max_width
        super().__init__(shape=None, dtype=np.uint8, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        height = int(self.np_random.integers(1, min(self.max_height, 64) + 1))
        width = int(self.np_random.integers(1, min(self.max_width, 64) + 1))
        return self.np_random.integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, np.ndarray)
            and x.dtype == np.uint8
            and x.ndim == 3
            and x.shape[2] == 3
            and 1 <= x.shape[0] <= self.max_height
            and 1 <= x.shape[1] <= self.max_width
        )

    def __repr__(self) -> str:
        return f"ImageSpace(max_height={self.max_height}, max_width={self.max_width})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, ImageSpace)
            and (other.max_height, other.max_width) == (self.max_height, self.max_width)
        )


def observation_space(max_text: int, max_image_side: int) -> spaces.Dict:
    """The env's observation space: `{"text": str, "images": tuple of RGB uint8 arrays}`."""
    return spaces.Dict({
        "text": TextSpace(max_text),
        "images": spaces.Sequence(ImageSpace(max_image_side, max_image_side), stack=False),
    })
