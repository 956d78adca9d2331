"""The transformers agent on a tiny random Qwen2.5-VL, offline on CPU."""

from __future__ import annotations

import gymnasium as gym
import pytest

import pyvision_env  # noqa: F401
from pyvision_agents.base import EpisodeContext
from pyvision_agents.registry import make_agent
from pyvision_agents.runner import run_episodes


@pytest.fixture(scope="module")
def agent(tiny_qwen):
    return make_agent(f"transformers:{tiny_qwen}", {"device": "cpu", "max_new_tokens": 12})


def _context(env, seed=0):
    observation, info = env.reset(seed=seed)
    return EpisodeContext(0, info["messages"], observation, info, info)


def test_prompt_renders_every_role_and_image(agent):
    env = gym.make("PyVisionImage-v0", difficulty="easy")
    context = _context(env)
    _, _, _, _, info = env.step("<code>\n```python\nprint(image_clue_0.size)\n```\n</code>")
    text, images = agent.render(info["messages"])
    env.close()
    assert text.startswith("<|im_start|>user\n<image_clue_0><|vision_start|><|image_pad|><|vision_end|>")
    assert "<|im_start|>assistant\n<code>" in text
    assert "<|im_start|>observation\n<interpreter>Text Result:\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert len(images) == 1 and images[0].size == context.observation["images"][0].shape[1::-1]


def test_batched_episodes_run_to_their_end(agent):
    calls = []
    original = agent._generate_batch
    agent._generate_batch = lambda batch: calls.append(len(batch)) or original(batch)
    try:
        make_env = lambda: gym.make("PyVisionImage-v0", difficulty="easy", max_turns=2)  # noqa: E731
        records = list(run_episodes(make_env, agent, [(i, i) for i in range(3)], num_envs=2))
    finally:
        del agent._generate_batch
    assert sorted(r.episode for r in records) == [0, 1, 2]
    assert max(calls) == 2  # one generate call serves both running episodes
    for record in records:
        assert record.end_reason in ("EXCEED_MAX_TURNS", "DONE", "ERROR_IN_ACTION")
        roles = [m["role"] for m in record.transcript]
        assert roles[:2] == ["user", "assistant"] and record.turns >= 1
        assert record.images and record.images[0].ndim == 3


def test_greedy_batch_matches_one_at_a_time(agent):
    env = gym.make("PyVisionImage-v0", difficulty="easy")
    contexts = [_context(env, seed=s) for s in (0, 1)]
    env.close()
    together = agent.act(contexts)
    alone = [agent.act([c])[0] for c in contexts]
    assert together == alone  # left padding does not change what each episode gets


def test_tools_protocol_renders_tool_calls(tiny_qwen):
    agent = make_agent(f"transformers:{tiny_qwen}",
                       {"device": "cpu", "max_new_tokens": 4, "protocol": "tools"})
    env = gym.make("PyVisionImage-v0", difficulty="easy")
    _context(env)
    _, _, _, _, info = env.step("Look.\n<code>\n```python\nprint(1)\n```\n</code>")
    env.close()
    from pyvision_agents.chat import to_model_messages

    text, _ = agent.render(to_model_messages(info["messages"], "tools"))
    assert '<tools>\n{"type": "function", "function": {"name": "python"' in text
    assert '<|im_start|>assistant\nLook.\n<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}}' in text
    assert "<|im_start|>user\n<tool_response>\n<interpreter>Text Result:\n1</interpreter>" in text
    assert isinstance(agent.act([EpisodeContext(0, info["messages"], {}, info, info)])[0], str)
