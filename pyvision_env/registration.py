"""The registered env ids: a table of presets registered in one loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

ENTRY_POINT = "pyvision_env.env:PyVisionEnv"


@dataclass(frozen=True)
class Preset:
    """One registered id: its kwargs for `PyVisionEnv` and a one-line description."""

    id: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)


# Per-family ids: `PyVisionImage-<Family>-v0` draws from one built-in family only.
_IMAGE_FAMILIES = {
    "TinyText": "tiny_text",
    "CountMarks": "count_marks",
    "CompareObjects": "compare_objects",
    "ChartValue": "chart_value",
}

# Per-family ids: `PyVisionVideo-<Family>-v0`; `PyVisionVideo-v0` draws from all of them.
_VIDEO_FAMILIES = {
    "FlashTime": "flash_time",
    "BlinkCount": "blink_count",
    "EventOrder": "event_order",
    "DigitAtTime": "digit_at_time",
    "DotDistance": "dot_distance",
}

PRESETS: tuple[Preset, ...] = (
    Preset(
        "PyVisionImage-v0",
        "Image questions from the built-in families (or data_path=); the image is in the prompt.",
    ),
    Preset(
        "PyVisionImageNoHint-v0",
        "As PyVisionImage-v0, but the prompt gives only the image size (PyVision-RL no-hint).",
        {"image_in_prompt": False},
    ),
    *(
        Preset(
            f"PyVisionImage-{title}-v0",
            f"PyVisionImage-v0 restricted to the built-in '{family}' family.",
            {"families": (family,)},
        )
        for title, family in _IMAGE_FAMILIES.items()
    ),
    Preset(
        "PyVisionVideo-v0",
        "Video questions from the built-in families (or data_path=); no frames up front, "
        "the model reads frames by code.",
        {"families": tuple(_VIDEO_FAMILIES.values())},
    ),
    *(
        Preset(
            f"PyVisionVideo-{title}-v0",
            f"PyVisionVideo-v0 restricted to the built-in '{family}' family.",
            {"families": (family,)},
        )
        for title, family in _VIDEO_FAMILIES.items()
    ),
)


def register_all() -> None:
    """Register every preset with Gymnasium (idempotent)."""
    for preset in PRESETS:
        if preset.id not in gym.registry:
            gym.register(id=preset.id, entry_point=ENTRY_POINT, kwargs=dict(preset.kwargs))


def descriptions() -> dict[str, str]:
    """Registered id -> one-line description, for `pyvision-env list`."""
    return {preset.id: preset.description for preset in PRESETS}
