"""Instruction templates and the first user message of an episode."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

DEFAULT_PROMPT_TYPE = "image"

# PyVision and PyVision-RL start with a single user message and no system message; so do we.
_DEFAULT_TEMPLATES = ("prompts", "default.json")

# `{{` / `}}` escapes (str.format's, used by PyVision's own template files) and `{name}` fields.
_FIELD_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ImageInfo:
    """The size of one input image, in pixels."""

    width: int
    height: int


@dataclass(frozen=True)
class VideoInfo:
    """What the prompt says about one input video (no frames are given up front).

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


def load_prompt_templates(path: str | Path | None = None) -> dict[str, str]:
    """Load a JSON file of instruction templates keyed by prompt type.

    Args:
        path: a JSON object mapping prompt type to template text, such as PyVision's
            `prompt_template_vis.json` or PyVision-RL's `rl_system_prompt_template.json`.
            None loads the templates shipped with pyvision-env (`image`, `image_no_hint`, `video`).

    Raises:
        ValueError: the file cannot be read, is not JSON, or is not an object of strings; the
            message names the file.
    """
    if path is None:
        source = resources.files(__package__).joinpath(*_DEFAULT_TEMPLATES)
        name = str(source)
    else:
        source = Path(path)
        name = str(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read prompt templates from {name}: {exc}") from exc
    return _check_templates(data, name)


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """Replace `{name}` for each name in `values`; never raises on other braces.

    Brace rules follow str.format where PyVision's files depend on it: `{{` and `}}` stand for
    literal braces (so their templates read exactly as with str.format). Unlike str.format, a
    placeholder that `values` lacks is left as written, and so is any other brace (as in
    `\\boxed{}`).

    >>> fill_template("Q: {query} -> \\\\boxed{} {other} {{x}}", {"query": "why?"})
    'Q: why? -> \\\\boxed{} {other} {x}'
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return values.get(match.group(1), token)

    return _FIELD_RE.sub(replace, template)


def prompt_values(
    question: str, images: Sequence[ImageInfo], videos: Sequence[VideoInfo] = ()
) -> dict[str, str]:
    """The placeholder values for a task.

    `{query}` is the question. `{width}` / `{height}` are the first image's size (else the first
    video's frame size). `{image_information}` lists every image in PyVision's multi-image wording;
    `{image_info}` and `{video_info}` use PyVision-RL's wording; `{video_information}` adds each
    video's duration to it.
    """
    values = {
        "query": question,
        "image_information": "".join(_image_line(i, info) for i, info in enumerate(images)),
        "image_info": "\n".join(_image_info(i, info) for i, info in enumerate(images)),
        "video_info": "\n".join(_video_info(j, info) for j, info in enumerate(videos)),
        "video_information": "\n".join(
            _video_info(j, info, with_duration=True) for j, info in enumerate(videos)
        ),
    }
    first = images[0] if images else (videos[0] if videos else None)
    if first is not None:
        values["width"], values["height"] = str(first.width), str(first.height)
    return values


def build_prompt(
    template: str,
    question: str,
    images: Sequence[ImageInfo],
    image_arrays: Sequence[np.ndarray] | None,
    videos: Sequence[VideoInfo] = (),
) -> list[dict[str, Any]]:
    """The content parts of the episode's first (and only) user message.

    With `image_arrays`, each image i comes first as the text `<image_clue_i>`, the image part and
    the text `</image_clue_i>\\n\\n` (PyVision's layout); then the filled instruction. Without
    them (no-hint and video prompts) only the instruction is given, the sizes in its placeholders.

    Raises:
        ValueError: `image_arrays` and `images` differ in length.
    """
    parts: list[dict[str, Any]] = []
    if image_arrays is not None:
        if len(image_arrays) != len(images):
            raise ValueError(
                f"got {len(image_arrays)} image arrays for {len(images)} ImageInfo entries; "
                "pass one array per image, in clue order"
            )
        for i, array in enumerate(image_arrays):
            parts += [
                {"type": "text", "text": f"<image_clue_{i}>"},
                {"type": "image", "image": array},
                {"type": "text", "text": f"</image_clue_{i}>\n\n"},
            ]
    instruction = fill_template(template, prompt_values(question, images, videos))
    parts.append({"type": "text", "text": instruction})
    return parts


def _check_templates(data: object, name: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ValueError(
            f"prompt templates in {name} must be a JSON object of prompt type -> template text, "
            f"got {type(data).__name__}"
        )
    bad = [key for key, value in data.items() if not isinstance(value, str)]
    if bad:
        raise ValueError(f"prompt templates in {name}: values must be strings, not for {bad}")
    return dict(data)


def _image_line(i: int, info: ImageInfo) -> str:
    return f"width of image_clue_{i}: {info.width}, height of image_clue_{i}: {info.height}\n"


def _image_info(i: int, info: ImageInfo) -> str:
    return (
        f"Image Width: {info.width}; Image Height: {info.height}\n"
        f"The original image has been read into the global variable `image_clue_{i}`."
    )


def _video_info(j: int, info: VideoInfo, *, with_duration: bool = False) -> str:
    duration = f"Duration: {info.duration:.2f} seconds\n" if with_duration else ""
    return (
        f"Frame Width: {info.width}; Frame Height: {info.height};\n"
        f"Video Length: {info.num_frames}; Sample FPS: {info.fps:.2f}\n"
        f"{duration}"
        f"The original video has been read into the global variable `video_clue_{j}`."
    )
