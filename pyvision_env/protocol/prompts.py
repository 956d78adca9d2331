"""Instruction templates and the first user message of an episode: template choice, frames
shown up front, and the filled instruction."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pyvision_env.media.episode import EpisodeMedia, Frame
from pyvision_env.media.video import VideoMeta

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
class PromptBuilder:
    """Builds an episode's first user message from its question and media.

    Attributes:
        templates: instruction templates keyed by prompt type (`load_prompt_templates`).
        prompt_type: the template every episode uses; None picks `default_prompt_type`'s.
        image_in_prompt: show the images in the message, or give only their size.
    """

    templates: Mapping[str, str]
    prompt_type: str | None = None
    image_in_prompt: bool = True

    @classmethod
    def load(
        cls, path: str | Path | None = None, prompt_type: str | None = None,
        image_in_prompt: bool = True,
    ) -> PromptBuilder:
        """Load the templates at `path` (None: the shipped ones) and check `prompt_type`.

        Raises:
            ValueError: the file cannot be read, or has no template named `prompt_type`.
        """
        builder = cls(load_prompt_templates(path), prompt_type, image_in_prompt)
        if prompt_type is not None:
            builder.template(prompt_type)
        return builder

    def template(self, prompt_type: str) -> str:
        """The template of that type; a ValueError naming the known types if there is none."""
        try:
            return self.templates[prompt_type]
        except KeyError:
            raise ValueError(
                f"prompt_type {prompt_type!r} is not in the prompt templates; pass one of "
                f"{sorted(self.templates)} (or a prompt_template file that has it)"
            ) from None

    def build(self, question: str, media: EpisodeMedia) -> list[dict[str, Any]]:
        """The content parts: frames shown up front (if any), images, then the instruction.

        The image parts hold `media`'s own arrays (read-only, shared by episodes of a task).
        """
        prompt_type = self.prompt_type or default_prompt_type(
            has_images=bool(media.images), has_videos=bool(media.videos),
            image_in_prompt=self.image_in_prompt,
        )
        infos = [ImageInfo(width=a.shape[1], height=a.shape[0]) for a in media.images]
        shown = list(media.images) if self.image_in_prompt else None
        return frame_parts(media.frames) + build_prompt(
            self.template(prompt_type), question, infos, shown, media.videos
        )


def default_prompt_type(*, has_images: bool, has_videos: bool, image_in_prompt: bool) -> str:
    """"video" for a video-only task, else "image" or (images not shown) "image_no_hint"."""
    if has_videos and not has_images:
        return "video"
    return "image" if image_in_prompt else "image_no_hint"


def frame_parts(frames: Sequence[Frame]) -> list[dict[str, Any]]:
    """Prompt parts for frames shown up front: each labelled with its index and time."""
    if not frames:
        return []
    parts: list[dict[str, Any]] = [{
        "type": "text",
        "text": f"{len(frames)} frames sampled uniformly from video_clue_0 "
                "(any other frame can be read by code):\n",
    }]
    for frame in frames:
        parts += [
            {"type": "text", "text": f"Frame {frame.index} (t={frame.seconds:.2f}s): "},
            {"type": "image", "image": frame.image},
            {"type": "text", "text": "\n"},
        ]
    parts.append({"type": "text", "text": "\n"})
    return parts


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
    question: str, images: Sequence[ImageInfo], videos: Sequence[VideoMeta] = ()
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
    videos: Sequence[VideoMeta] = (),
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


def _video_info(j: int, info: VideoMeta, *, with_duration: bool = False) -> str:
    duration = f"Duration: {info.duration:.2f} seconds\n" if with_duration else ""
    return (
        f"Frame Width: {info.width}; Frame Height: {info.height};\n"
        f"Video Length: {info.num_frames}; Sample FPS: {info.fps:.2f}\n"
        f"{duration}"
        f"The original video has been read into the global variable `video_clue_{j}`."
    )
