"""The env's settings: flat keywords map onto the config objects, and every bad one says the fix."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import pyvision_env
from pyvision_env.config import (
    ENV_KEYWORDS,
    ConfigError,
    EpisodeLimits,
    ProtocolOptions,
    build_configs,
    sandbox_settings,
)
from pyvision_env.info import EndReason
from pyvision_env.sandbox import CellResult, CellStatus, SandboxConfig
from pyvision_env.tasks.task import Task


def small_task() -> Task:
    image = Image.fromarray(np.zeros((32, 48, 3), dtype=np.uint8))
    return Task(id="t", question="What?", answer="1", answer_type="number", images=(image,))


def test_flat_keywords_fill_both_configs():
    limits, protocol = build_configs(flat={"max_turns": 5, "max_context_tokens": 900,
                                           "chat_form": "inline", "initial_frames": 4})
    assert limits == EpisodeLimits(max_turns=5, max_context_tokens=900)
    assert protocol == ProtocolOptions(chat_form="inline", initial_frames=4)


def test_a_flat_keyword_overrides_the_same_field_of_a_given_object():
    limits, protocol = build_configs(
        EpisodeLimits(max_turns=7, max_images=4),
        ProtocolOptions(chat_form="inline", image_in_prompt=True),
        {"image_in_prompt": False, "max_turns": 3},
    )
    assert (limits.max_turns, limits.max_images) == (3, 4)
    assert (protocol.chat_form, protocol.image_in_prompt) == ("inline", False)


def test_env_built_from_objects_equals_env_built_from_flat_keywords():
    by_objects = pyvision_env.PyVisionEnv(
        tasks=[small_task()], limits=EpisodeLimits(max_turns=4),
        protocol=ProtocolOptions(on_error="terminate"))
    flat = pyvision_env.PyVisionEnv(tasks=[small_task()], max_turns=4, on_error="terminate")
    assert (by_objects.limits, by_objects.protocol) == (flat.limits, flat.protocol)


def test_registered_preset_keeps_its_setting_next_to_a_protocol_object():
    env = gym.make("PyVisionImageNoHint-v0", protocol=ProtocolOptions(chat_form="inline"))
    try:
        assert env.unwrapped.protocol.image_in_prompt is False
        assert env.unwrapped.protocol.chat_form == "inline"
    finally:
        env.close()


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"max_turn": 5}, ["unknown env option 'max_turn'", "did you mean 'max_turns'"]),
        ({"chatform": "inline"}, ["did you mean 'chat_form'"]),
        ({"max_turns": "5"}, ["max_turns must be a whole number", "'5' (str)", "max_turns=1"]),
        ({"max_turns": True}, ["max_turns must be a whole number"]),
        ({"max_turns": 2.5}, ["max_turns must be a whole number"]),
        ({"max_turns": 0}, ["max_turns must be >= 1"]),
        ({"max_images": -1}, ["max_images must be >= 0"]),
        ({"max_context_tokens": "lots"}, ["max_context_tokens must be a number > 0, or None for no limit"]),
        ({"max_episode_seconds": 0}, ["max_episode_seconds must be > 0, or None"]),
        ({"chat_form": "chat"}, ["chat_form must be one of 'observation', 'inline'"]),
        ({"on_error": "explode"}, ["on_error must be one of 'observe', 'terminate'"]),
        ({"image_in_prompt": "yes"}, ["image_in_prompt must be true or false"]),
        ({"initial_frames": -2}, ["initial_frames must be >= 0"]),
        ({"prompt_type": 3}, ["prompt_type must be a template name"]),
        ({"prompt_template": 3}, ["prompt_template must be a path"]),
        ({"initial_frames": 40, "max_images": 32}, ["raise max_images to at least 40"]),
        ({"limits": {"max_turns": 5}}, ["limits must be EpisodeLimits(...) or flat keywords such as max_turns=..."]),
        ({"protocol": "inline"}, ["protocol must be ProtocolOptions(...)"]),
        ({"reward": {"tool_reward": 0}}, ["reward must be a RewardConfig"]),
        ({"sandbox_config": {"cell_timeout": 5}}, ["sandbox_config must be a SandboxConfig"]),
        ({"cell_timeout": -1}, ["cell_timeout must be > 0, or None for sandbox_config's own"]),
        ({"sandbox": 3}, ["sandbox must be a backend name"]),
        ({"render_mode": "human"}, ["render_mode must be None or 'ansi'"]),
        ({"families": "tiny_text"}, ["pass families=['tiny_text']"]),
        ({"tasks": [small_task()], "data_path": "x.json"}, ["data_path= or tasks=, not both"]),
        ({"tasks": "data.json"}, ["tasks must be a non-empty list of pyvision_env.Task", "data_path="]),
        ({"strict": "no"}, ["strict must be true or false"]),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_bad_settings_raise_one_line_that_says_the_fix(kwargs, names):
    with pytest.raises(ConfigError) as caught:
        pyvision_env.PyVisionEnv(**kwargs)
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_unknown_option_message_names_every_env_keyword():
    import inspect

    named = [name for name, parameter in
             inspect.signature(pyvision_env.PyVisionEnv.__init__).parameters.items()
             if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
    assert list(ENV_KEYWORDS) == named[1:]  # after self
    with pytest.raises(ConfigError, match="did you mean 'sandbox_config'"):
        pyvision_env.PyVisionEnv(sandbox_cfg=None)


def test_config_errors_are_value_and_type_errors():
    with pytest.raises(ValueError, match="max_turns"):
        EpisodeLimits(max_turns=0)
    with pytest.raises(TypeError, match="unknown env option"):
        gym.make("PyVisionImage-v0", max_turn=5)


def test_unknown_prompt_type_fails_at_construction_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"pass one of \['image', 'image_no_hint', 'video'\]"):
        pyvision_env.PyVisionEnv(tasks=[small_task()], prompt_type="vis_tool")


def test_limits_report_the_first_limit_reached():
    limits = EpisodeLimits(max_turns=3, max_context_tokens=100, max_episode_seconds=5.0)
    within = {"turns": 1, "context_tokens": 50, "seconds": 1.0, "figures_dropped": False}
    assert limits.exceeded(**within) is None
    assert limits.exceeded(**{**within, "turns": 3}) is EndReason.EXCEED_MAX_TURNS
    assert limits.exceeded(**{**within, "seconds": 6.0}) is EndReason.EXCEED_TIME_BUDGET
    assert limits.exceeded(**{**within, "context_tokens": 101, "turns": 3}) is EndReason.OVER_LENGTH
    assert limits.exceeded(**{**within, "figures_dropped": True, "context_tokens": 101}) is (
        EndReason.EXCEED_MAX_IMAGES)


class _RecordingSandbox:
    """A sandbox that records the config it was built with and runs nothing."""

    configs: ClassVar[list[SandboxConfig]] = []

    def __init__(self, config):
        self.configs.append(config)

    def start(self, images=(), videos=()):
        pass

    def run(self, code, timeout=None):
        return CellResult(CellStatus.OK)

    def close(self):
        pass


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"sandbox_config": SandboxConfig(cell_timeout=5, max_figures=3)}, 5),
        ({"sandbox_config": SandboxConfig(cell_timeout=5), "cell_timeout": 2.5}, 2.5),
        ({"cell_timeout": 7}, 7),
        ({}, SandboxConfig().cell_timeout),
    ],
    ids=["config-only", "keyword-overrides", "keyword-only", "defaults"],
)
def test_cell_timeout_has_one_source(kwargs, expected):
    _RecordingSandbox.configs.clear()
    env = pyvision_env.PyVisionEnv(tasks=[small_task()], sandbox=_RecordingSandbox, **kwargs)
    env.reset(seed=0)
    env.close()
    (config,) = _RecordingSandbox.configs
    assert config.cell_timeout == expected
    if "sandbox_config" in kwargs:
        assert config.max_figures == kwargs["sandbox_config"].max_figures


def test_a_sandbox_configs_own_timeout_stops_a_cell():
    env = pyvision_env.PyVisionEnv(tasks=[small_task()], sandbox_config=SandboxConfig(cell_timeout=1))
    try:
        env.reset(seed=0)
        *_, info = env.step("<code>\n```python\nwhile True:\n    pass\n```\n</code>")
    finally:
        env.close()
    assert info["exec"]["status"] == "timeout" and info["exec"]["duration"] < 10


def test_sandbox_settings_keeps_the_config_without_a_keyword():
    config = SandboxConfig(cell_timeout=5)
    assert sandbox_settings(config, None) is config
    assert sandbox_settings(None, None) == SandboxConfig()
