"""The shared shape of model-backed agents: sampling settings, batching, per-episode failures."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from pyvision_agents.base import Action, AgentFailure, EpisodeContext
from pyvision_agents.chat import ModelReply, check_protocol, reply_to_action, to_model_messages


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings shared by every model backend.

    Attributes:
        max_new_tokens: tokens generated per turn at most.
        temperature: 0 is greedy decoding.
        top_p: nucleus sampling mass (ignored when greedy).
        seed: sampling seed where the backend takes one (None: unseeded).
    """

    max_new_tokens: int = 2048
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class ModelAgent:
    """Base of the model-backed agents: env chats in, one batched `_generate` call, actions out.

    A subclass implements `_generate(conversations)`, one reply per conversation (each in the
    protocol's model-side form, see `pyvision_agents.chat.to_model_messages`). When a batch call raises,
    the conversations are retried one by one so that only the episodes that really fail end
    with an `AgentFailure`.
    """

    name: str
    # the optional modules the backend imports -> the pip line that installs each
    requires: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def check_installed(cls) -> None:
        """Raise `require`'s ImportError for the first module in `requires` that is not installed,
        importing none: a missing extra stops a benchmark before it writes anything."""
        for module, install in cls.requires.items():
            if not _installed(module):
                raise ImportError(_not_installed(module, install))

    def __init__(self, name: str, protocol: str, generation: GenerationConfig | None) -> None:
        check_protocol(protocol)
        self.name = name
        self.protocol = protocol
        self.generation = generation or GenerationConfig()

    def act(self, contexts: Sequence[EpisodeContext]) -> list[Action]:
        conversations = [to_model_messages(c.messages, self.protocol) for c in contexts]
        replies = self._generate_isolated(conversations)
        return [
            reply if isinstance(reply, AgentFailure) else reply_to_action(reply, self.protocol)
            for reply in replies
        ]

    def _generate(self, conversations: list[list[dict[str, Any]]]) -> list[ModelReply | AgentFailure]:
        raise NotImplementedError

    def _generate_isolated(self, conversations):
        try:
            return self._generate(conversations)
        except Exception as error:  # noqa: BLE001 - a backend error must not end the run
            if len(conversations) == 1:
                return [AgentFailure(f"{type(error).__name__}: {error}")]
        return [self._generate_isolated([c])[0] for c in conversations]


HF_EXTRA = "pip install 'pyvision-env[hf]'"


def require(module: str, install: str = HF_EXTRA) -> Any:
    """Import an optional heavy dependency, or fail with the pip line that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(_not_installed(module, install)) from error


def _not_installed(module: str, install: str) -> str:
    return f"this agent needs {module!r}, which is not installed: {install}"


def _installed(module: str) -> bool:
    if module in sys.modules:  # imported already, or blocked (None)
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None
