"""The registered env ids: a table of presets registered in one loop.

Besides the suite-wide ids, each built-in family gets its own id,
`PyVisionImage-<title>-v0` / `PyVisionVideo-<title>-v0`, from its class's `title`, for
every family in the registries `FAMILIES` and `VIDEO_FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from pyvision_env.tasks.families import FAMILIES
from pyvision_env.tasks.video_families import VIDEO_FAMILIES

ENTRY_POINT = "pyvision_env.env:PyVisionEnv"


@dataclass(frozen=True)
class Preset:
    """One registered id: its kwargs for `PyVisionEnv` and a one-line description."""

    id: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)


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
            f"PyVisionImage-{family.title}-v0",
            f"PyVisionImage-v0 restricted to the built-in '{family.name}' family.",
            {"families": (family.name,)},
        )
        for family in FAMILIES.values()
    ),
    Preset(
        "PyVisionVideo-v0",
        "Video questions from the built-in families (or data_path=); no frames up front, "
        "the model reads frames by code.",
        {"families": tuple(VIDEO_FAMILIES)},
    ),
    *(
        Preset(
            f"PyVisionVideo-{family.title}-v0",
            f"PyVisionVideo-v0 restricted to the built-in '{family.name}' family.",
            {"families": (family.name,)},
        )
        for family in VIDEO_FAMILIES.values()
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
