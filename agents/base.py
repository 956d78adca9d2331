"""The agent interface: a batch of running episodes in, one turn of text (or a failure) per episode out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, Union


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


@dataclass(frozen=True)
class AgentFailure:
    """The agent could not produce a turn for one episode (endpoint down, prompt too long, ...).

    The runner ends that episode with end reason `AGENT_ERROR` and `message` as its error; the
    other episodes go on. It is never the policy's answer: drop such episodes, don't score them.
    """

    message: str


Action = Union[str, AgentFailure]


class Agent(Protocol):
    """Turns the contexts of every active episode into the next turn, in one call.

    `act` returns one entry per context, in order: the model's text for the turn, or an
    `AgentFailure` for an episode the agent could not serve.
    """

    name: str

    def act(self, contexts: Sequence[EpisodeContext]) -> list[Action]: ...
