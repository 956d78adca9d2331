"""The vLLM agent: needs vllm and a CUDA GPU, so it runs only where both are present."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import pytest

import pyvision_env  # noqa: F401

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def _skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm, on a machine with a CUDA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU: vLLM's offline engine runs only on a GPU"
    return None


def test_missing_vllm_fails_with_the_pip_line():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from pyvision_agents.registry import make_agent

    with pytest.raises(ImportError, match="pip install vllm"):
        make_agent("vllm:/nonexistent/model")


def test_vllm_agent_plays_batched_episodes(tiny_qwen):
    reason = _skip_reason()
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    from pyvision_agents.registry import make_agent
    from pyvision_agents.runner import run_episodes

    agent = make_agent(f"vllm:{tiny_qwen}", {"max_new_tokens": 16, "max_images": 4,
                                             "max_model_len": 4096, "gpu_memory_utilization": 0.3,
                                             "engine_kwargs": {"enforce_eager": True}})
    make_env = lambda: gym.make("PyVisionImage-v0", difficulty="easy", max_turns=2, max_images=4)  # noqa: E731
    records = list(run_episodes(make_env, agent, [(i, i) for i in range(3)], num_envs=3))
    assert sorted(r.episode for r in records) == [0, 1, 2]
    assert all(r.end_reason != "AGENT_ERROR" for r in records), [r.error for r in records]
