"""The env's settings: episode limits and protocol options, checked at construction.

`PyVisionEnv` takes them as objects (``limits=EpisodeLimits(...)``, ``protocol=ProtocolOptions(...)``)
or as flat keyword arguments (``gym.make(id, max_turns=5, chat_form="inline")``); every field of
both classes is also a flat keyword. `build_configs` maps the flat keywords onto the objects.
Every error is a `ConfigError` whose one-line message says what to change.
"""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from pyvision_env.info import EndReason
from pyvision_env.media.tokens import VisualTokenRule
from pyvision_env.protocol.render import CHAT_FORMS, ChatForm
from pyvision_env.rewards import RewardConfig
from pyvision_env.sandbox.base import SandboxConfig

OnError = Literal["observe", "terminate"]
ON_ERRORS: tuple[str, ...] = ("observe", "terminate")


class ConfigError(ValueError, TypeError):
    """A bad env setting; the message says what to change. Both a ValueError and a TypeError."""


@dataclass(frozen=True)
class EpisodeLimits:
    """When an episode is cut short (truncated) without an answer.

    Attributes:
        max_turns: model turns before `EXCEED_MAX_TURNS` (PyVision evaluation: 30; training: 5).
        max_images: images in the context (prompt images, initial frames, figures) before
            `EXCEED_MAX_IMAGES`; the figures that still fit are kept (PyVision: 32).
        max_context_tokens: `OVER_LENGTH` when the context's estimate (text characters / 3.5 +
            visual tokens) exceeds it; None: no context budget.
        max_episode_seconds: `EXCEED_TIME_BUDGET` after this wall-clock time; None: no budget.
    """

    max_turns: int = 30
    max_images: int = 32
    max_context_tokens: float | None = None
    max_episode_seconds: float | None = None

    def __post_init__(self) -> None:
        _check_int("max_turns", self.max_turns, minimum=1)
        _check_int("max_images", self.max_images, minimum=0)
        _check_positive_or_none("max_context_tokens", self.max_context_tokens)
        _check_positive_or_none("max_episode_seconds", self.max_episode_seconds)

    def exceeded(
        self, *, turns: int, context_tokens: int, seconds: float, figures_dropped: bool
    ) -> EndReason | None:
        """The first limit an episode has reached after a turn, or None.

        Args:
            turns: model turns taken.
            context_tokens: the context's estimated length (`Transcript.context_tokens`).
            seconds: wall-clock time since reset.
            figures_dropped: the last cell showed more figures than there was room for.
        """
        if figures_dropped:
            return EndReason.EXCEED_MAX_IMAGES
        if self.max_context_tokens is not None and context_tokens > self.max_context_tokens:
            return EndReason.OVER_LENGTH
        if self.max_episode_seconds is not None and seconds > self.max_episode_seconds:
            return EndReason.EXCEED_TIME_BUDGET
        if turns >= self.max_turns:
            return EndReason.EXCEED_MAX_TURNS
        return None


@dataclass(frozen=True)
class ProtocolOptions:
    """How the chat reads: prompt, where observations go, how errors are handled.

    Attributes:
        chat_form: "observation" (PyVision-RL: each observation is its own message with role
            "observation") or "inline" (PyVision: appended to the assistant message).
        on_error: "observe" feeds code errors and malformed turns back to the model;
            "terminate" ends the episode with `ERROR_IN_ACTION`, as PyVision-RL training did.
        max_output_chars: cap on a cell's stdout in the observation (head and tail kept);
            PyVision's loop used 400; 0 or less: no cap.
        prompt_template: a JSON file of prompt templates keyed by prompt type (e.g. PyVision's);
            None uses the templates shipped with the env.
        prompt_type: which template to use; None picks "image", "image_no_hint" or "video".
        image_in_prompt: show the task images in the prompt (PyVision-Image) or give only their
            size (PyVision-RL's no-hint variant). The sandbox has them either way.
        initial_frames: video tasks show this many uniformly spaced frames in the prompt
            (0: none, PyVision-Video's on-demand setting; > 0: the uniform baseline).
    """

    chat_form: ChatForm = "observation"
    on_error: OnError = "observe"
    max_output_chars: int = 2000
    prompt_template: str | Path | None = None
    prompt_type: str | None = None
    image_in_prompt: bool = True
    initial_frames: int = 0

    def __post_init__(self) -> None:
        _check_choice("chat_form", self.chat_form, CHAT_FORMS)
        _check_choice("on_error", self.on_error, ON_ERRORS)
        _check_int("max_output_chars", self.max_output_chars, minimum=None)
        if self.prompt_template is not None and not isinstance(self.prompt_template, (str, Path)):
            raise ConfigError(f"prompt_template must be a path to a JSON file or None, "
                              f"got {_shown(self.prompt_template)}")
        if self.prompt_type is not None and not isinstance(self.prompt_type, str):
            raise ConfigError(f"prompt_type must be a template name (str) or None, "
                              f"got {_shown(self.prompt_type)}")
        if not isinstance(self.image_in_prompt, bool):
            raise ConfigError(f"image_in_prompt must be true or false, "
                              f"got {_shown(self.image_in_prompt)}")
        _check_int("initial_frames", self.initial_frames, minimum=0)


_OWNERS: dict[str, type] = {
    f.name: owner for owner in (EpisodeLimits, ProtocolOptions) for f in fields(owner)
}
FLAT_OPTIONS: tuple[str, ...] = tuple(_OWNERS)
# The env's other keywords (`PyVisionEnv.__init__`), named in the unknown-option message.
ENV_KEYWORDS: tuple[str, ...] = (
    "data_path", "tasks", "families", "difficulty", "strict", "limits", "protocol", "reward",
    "token_rule", "sandbox", "sandbox_config", "cell_timeout", "render_mode",
)


def build_configs(
    limits: EpisodeLimits | None = None,
    protocol: ProtocolOptions | None = None,
    flat: Mapping[str, Any] | None = None,
) -> tuple[EpisodeLimits, ProtocolOptions]:
    """The env's limits and protocol options from objects and flat keywords.

    A flat keyword overrides the same field of the object given (so a registered preset's
    ``image_in_prompt=False`` holds even when a `ProtocolOptions` is passed too).

    >>> limits, protocol = build_configs(flat={"max_turns": 5, "chat_form": "inline"})
    >>> limits.max_turns, protocol.chat_form
    (5, 'inline')

    Raises:
        ConfigError: an unknown keyword (the message suggests the closest), an ill-typed or
            out-of-range value, or settings that contradict each other.
    """
    limits = _instance("limits", limits, EpisodeLimits)
    protocol = _instance("protocol", protocol, ProtocolOptions)
    flat = dict(flat or {})
    for name in flat:
        if name not in _OWNERS:
            raise ConfigError(_unknown_option(name))
    limits = replace(limits, **{k: v for k, v in flat.items() if _OWNERS[k] is EpisodeLimits})
    protocol = replace(protocol,
                       **{k: v for k, v in flat.items() if _OWNERS[k] is ProtocolOptions})
    if protocol.initial_frames > limits.max_images:
        raise ConfigError(
            f"initial_frames={protocol.initial_frames} shows more images than "
            f"max_images={limits.max_images} allows; raise max_images to at least "
            f"{protocol.initial_frames} or lower initial_frames"
        )
    return limits, protocol


def sandbox_settings(config: SandboxConfig | None, cell_timeout: float | None) -> SandboxConfig:
    """The sandbox limits: `config` (default `SandboxConfig()`), its `cell_timeout` replaced only
    when `cell_timeout` is given, so a config's own timeout is never reset behind its back.

    >>> sandbox_settings(SandboxConfig(cell_timeout=5), None).cell_timeout
    5
    >>> sandbox_settings(SandboxConfig(cell_timeout=5), 9.5).cell_timeout
    9.5
    """
    check_instance("sandbox_config", config, SandboxConfig, "a SandboxConfig")
    config = config or SandboxConfig()
    if cell_timeout is None:
        return config
    _check_positive_or_none("cell_timeout", cell_timeout, "sandbox_config's own timeout")
    return replace(config, cell_timeout=cell_timeout)


def check_components(
    *, reward: Any = None, token_rule: Any = None, sandbox: Any = "local", render_mode: Any = None
) -> None:
    """Check the env's component arguments' types; a `ConfigError` saying what to pass."""
    check_instance("reward", reward, RewardConfig, "a RewardConfig")
    check_instance("token_rule", token_rule, VisualTokenRule, "a VisualTokenRule")
    if not (isinstance(sandbox, str) or callable(sandbox)):
        raise ConfigError(f"sandbox must be a backend name ('local', 'docker') or a callable "
                          f"SandboxConfig -> Sandbox, got {_shown(sandbox)}")
    if render_mode not in (None, "ansi"):
        raise ConfigError(f"render_mode must be None or 'ansi', got {_shown(render_mode)}")


def check_instance(name: str, value: Any, expected: type, hint: str) -> None:
    """Raise a `ConfigError` unless `value` is an `expected` (or None); `hint` says what to pass."""
    if value is not None and not isinstance(value, expected):
        raise ConfigError(f"{name} must be {hint}, got {_shown(value)}")


def _instance(name: str, value: Any, cls: type) -> Any:
    check_instance(name, value, cls,
                   f"{cls.__name__}(...) or flat keywords such as {fields(cls)[0].name}=...")
    return cls() if value is None else value


def _unknown_option(name: str) -> str:
    known = ENV_KEYWORDS + FLAT_OPTIONS
    close = difflib.get_close_matches(name, known, n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown env option {name!r}; {suggestion}known options: {', '.join(known)}"


def _check_int(name: str, value: Any, *, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        example = f"; pass e.g. {name}={max(minimum, 1)}" if minimum is not None else ""
        raise ConfigError(f"{name} must be a whole number, got {_shown(value)}{example}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def _check_positive_or_none(name: str, value: Any, none_means: str = "no limit") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number > 0, or None for {none_means}; "
                          f"got {_shown(value)}")
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, or None for {none_means}; got {value}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                          f"got {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
