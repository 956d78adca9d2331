"""The `Task` record: one question about some images or videos, with its answer; and
`TaskView`, the same task without its answer, as agents see it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

from PIL import Image

from pyvision_env import info as keys
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


@dataclass(frozen=True)
class TaskView:
    """A task as an agent may know it: everything the env reports at reset, never the answer.

    The env puts it in the reset `info` (`as_info`); an agent or runner rebuilds it with
    `from_info`. The media are not part of it: the agent sees them only in the prompt and the
    sandbox.
    """

    id: str
    question: str
    answer_type: AnswerType = "text"
    choices: tuple[str, ...] = ()
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, task: Task) -> TaskView:
        """The answer-free view of `task` (its `extra` deep-copied)."""
        return cls(task.id, task.question, task.answer_type, tuple(task.choices), task.source,
                   copy.deepcopy(dict(task.extra)))

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> TaskView:
        """The view from a reset `info` (`KeyError` for a step `info`, which lacks it)."""
        return cls(
            id=info[keys.TASK_ID],
            question=info[keys.QUESTION],
            answer_type=info[keys.ANSWER_TYPE],
            choices=tuple(info[keys.CHOICES]),
            source=info[keys.TASK_SOURCE],
            extra=copy.deepcopy(dict(info[keys.TASK_EXTRA])),
        )

    def as_info(self) -> dict[str, Any]:
        """The reset `info` entries of this view (plain lists and dicts, copied)."""
        return {
            keys.TASK_ID: self.id,
            keys.QUESTION: self.question,
            keys.CHOICES: list(self.choices),
            keys.ANSWER_TYPE: self.answer_type,
            keys.TASK_SOURCE: self.source,
            keys.TASK_EXTRA: copy.deepcopy(dict(self.extra)),
        }
