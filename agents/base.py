"""The agent interface: a batch of running episodes in, one turn of text per episode out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence


@dataclass
class EpisodeContext:
    """What an agent sees of one running episode.

    Attributes:
        slot: which of the runner's envs this episode runs in (stable for the episode).
        messages: the chat so far (HF/OpenAI multimodal parts; images as uint8 arrays).
        observation: the latest observation, `{"text": str, "images": tuple}`.
        reset_info: the `info` returned by `reset` (task id, question, choices, task extra).
        info: the latest `info`.
    """

    slot: int
    messages: list[dict[str, Any]]
    observation: dict[str, Any]
    reset_info: dict[str, Any]
    info: dict[str, Any]


class Agent(Protocol):
    """Turns the contexts of every active episode into the next turn's text, in one call."""

    name: str

    def act(self, contexts: Sequence[EpisodeContext]) -> list[str]: ...
