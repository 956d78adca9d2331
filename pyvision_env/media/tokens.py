"""Visual-token accounting: Qwen2.5-VL's `smart_resize` and the token count it implies."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Longest side over shortest side beyond which Qwen2.5-VL refuses an image.
MAX_ASPECT_RATIO = 200


@dataclass(frozen=True)
class VisualTokenRule:
    """How a Qwen2.5-VL style processor sizes an image before turning it into tokens.

    The defaults are those of `qwen_vl_utils.vision_process` (QwenLM's helper, which
    PyVision-RL's data pipeline calls through `fetch_image`): `IMAGE_FACTOR = 28`,
    `MIN_PIXELS = 4 * 28 * 28` (3136, the same as 56 * 56) and
    `MAX_PIXELS = 16384 * 28 * 28` (12,845,056). For comparison, transformers'
    `Qwen2VLImageProcessor` defaults to `min_pixels = 56 * 56` and
    `max_pixels = 28 * 28 * 1280` (1,003,520), and PyVision-RL's training script sets
    `min_pixels=3136, max_pixels=2000000` (see `PYVISION_RL_RULE`).

    Attributes:
        factor: both sides are rounded to a multiple of this (patch size 14 x merge size 2);
            one visual token covers a `factor` x `factor` square.
        min_pixels: images smaller than this (after rounding) are scaled up.
        max_pixels: images larger than this (after rounding) are scaled down.
    """

    factor: int = 28
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 16384 * 28 * 28

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"factor must be a positive integer, got {self.factor}")
        if self.min_pixels < 1:
            raise ValueError(f"min_pixels must be at least 1, got {self.min_pixels}")
        if self.max_pixels < self.min_pixels:
            raise ValueError(
                f"max_pixels ({self.max_pixels}) is below min_pixels ({self.min_pixels}): "
                "raise max_pixels or lower min_pixels"
            )


# The pixel budget PyVision-RL trained with (its README's training script).
PYVISION_RL_RULE = VisualTokenRule(min_pixels=3136, max_pixels=2_000_000)


def smart_resize(height: int, width: int, rule: VisualTokenRule = VisualTokenRule()) -> tuple[int, int]:
    """Return the (height, width) a Qwen2.5-VL processor resizes an image to.

    Same arithmetic as `qwen_vl_utils.smart_resize`: round each side to the nearest
    multiple of `rule.factor` (at least one factor); if that exceeds `rule.max_pixels`,
    scale both sides down by the same ratio and floor to the factor; if it is below
    `rule.min_pixels`, scale up and ceil to the factor.

    Raises:
        ValueError: a side is not positive, or the aspect ratio exceeds 200 (as Qwen does).

    >>> smart_resize(1000, 1000)
    (1008, 1008)
    >>> smart_resize(10, 10)
    (56, 56)
    """
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be positive, got height={height}, width={width}")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(f"absolute aspect ratio must be at most {MAX_ASPECT_RATIO}, got {ratio:.1f}")
    factor = rule.factor
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > rule.max_pixels:
        beta = math.sqrt(height * width / rule.max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < rule.min_pixels:
        beta = math.sqrt(rule.min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def count_visual_tokens(height: int, width: int, rule: VisualTokenRule = VisualTokenRule()) -> int:
    """Number of LLM tokens one image of this size costs: one per `factor` x `factor` cell.

    Never raises for a positive size: an image past Qwen's aspect-ratio limit (which the model
    would refuse) is counted as if its long side were cut to the limit.

    >>> count_visual_tokens(224, 224)
    64
    """
    height, width = max(1, height), max(1, width)
    height = min(height, width * MAX_ASPECT_RATIO)
    width = min(width, height * MAX_ASPECT_RATIO)
    h_bar, w_bar = smart_resize(height, width, rule)
    return (h_bar // rule.factor) * (w_bar // rule.factor)
