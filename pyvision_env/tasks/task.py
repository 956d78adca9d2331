"""The `Task` record: one question about some images or videos, with its answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from PIL import Image

from pyvision_env.answers import ANSWER_TYPES, AnswerType

# A task image is either a file on disk or a picture already in memory (built-in families).
ImageSource = Union[Path, Image.Image]


@dataclass(frozen=True)
class Task:
    """One verifiable question.

    Attributes:
        id: unique within its source.
        question: the question text as the model sees it (choices included, if any).
        answer: the ground truth as a string: a choice letter ("B"), a number ("12.5"), or text.
        answer_type: how the answer is graded: "choice", "number" or "text".
        choices: option texts for a multiple-choice question, in letter order (A, B, ...).
        images: the input images, in clue order (`image_clue_0`, `image_clue_1`, ...).
        videos: the input videos, in clue order (`video_clue_0`, ...).
        source: where the task comes from (a dataset's `data_source`, or `builtin/<family>`).
        extra: anything else the source carries. Built-in families put `family`,
            `difficulty` and the reference solution's parameters (never the answer) here.
    """

    id: str
    question: str
    answer: str
    answer_type: AnswerType = "text"
    choices: tuple[str, ...] = ()
    images: tuple[ImageSource, ...] = ()
    videos: tuple[Path, ...] = ()
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"answer_type must be one of {ANSWER_TYPES}, got {self.answer_type!r}")
