"""OpenRLHF's multi-turn agent instance over a pyvision-env env, and the dataset rows it plays.

OpenRLHF (`--agent_func_path FILE.py`) imports FILE and builds `AgentInstance()` per prompt; its
`MultiTurnAgentExecutor` calls `reset({"observation": prompt, "label": label})` and, after each
generation, `step({"observation_text", "action_text", "label", ...})`, and tokenizes the returned
`environment_feedback` text with its `environment_images`. FILE holds two lines:

    from pyvision_agents.integrations.openrlhf import agent_instance_class
    AgentInstance = agent_instance_class(AutoProcessor.from_pretrained(MODEL), "PyVisionImage-v0")

and the prompts come from `dataset_rows` (prompt already rendered with the chat template; run
without `--apply_chat_template`): the label names the seed and task, so each instance replays the
task its prompt shows.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Sequence

from pyvision_agents.integrations.messages import MessageEnv, images_of
from pyvision_agents.integrations.tokens import render_continuation
from pyvision_env import info as keys


def dataset_rows(processor: Any, env_id: str, seeds: Sequence[int], **env_kwargs: Any) -> list[dict[str, Any]]:
    """One row per seed: `prompt` (the env's first message rendered with `processor`'s chat
    template, generation prompt included), `images` (PIL) and `label` (JSON: env id, seed, task id)."""
    env = MessageEnv(env_id, **env_kwargs)
    try:
        rows = []
        for seed in seeds:
            chat = env.reset(seed=seed)
            rows.append({
                "prompt": processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                "images": images_of(chat),
                "label": json.dumps({"env_id": env_id, "seed": seed, "task_id": env.reset_info[keys.TASK_ID]}),
            })
        return rows
    finally:
        env.close()


def agent_instance_class(processor: Any, env_id: str = "PyVisionImage-v0", **env_kwargs: Any) -> type:
    """An OpenRLHF `AgentInstance` class playing `env_id` (made with `env_kwargs`).

    It subclasses `openrlhf.utils.agent.AgentInstanceBase` when OpenRLHF is installed (its
    executor checks that), else it is a plain class with the same `reset` / `step` coroutines.
    `processor`'s chat template renders the env's observations as the text after the action.
    """
    try:
        from openrlhf.utils.agent import AgentInstanceBase
        bases: tuple[type, ...] = (AgentInstanceBase,)
    except ImportError:
        bases = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.env = MessageEnv(env_id, **env_kwargs)

    async def reset(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        label = json.loads(states["label"])
        await asyncio.to_thread(self.env.reset, int(label["seed"]))
        task_id = self.env.reset_info[keys.TASK_ID]
        if label.get("task_id") not in (None, task_id):
            raise ValueError(f"the label's task {label['task_id']!r} is not the env's task {task_id!r} for "
                             f"seed {label['seed']}: make the rows with the same env id and env kwargs")
        return {"observation": states["observation"]}

    async def step(self, states: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        import torch

        chat = self.env.messages
        action = states["action_text"]
        new, reward, done, info = await asyncio.to_thread(self.env.step, action)
        feedback = "" if done else render_continuation(processor, chat, action, new)
        if done:
            await asyncio.to_thread(self.env.close)
        return {
            "rewards": torch.tensor(reward),
            "scores": torch.tensor(reward),
            "environment_feedback": feedback,
            "environment_images": images_of(new) if not done else [],
            "done": done,
            "extra_logs": {"correct": torch.tensor(float(info[keys.CORRECT])),
                           "code_cells": torch.tensor(float(info[keys.NUM_CODE_CELLS]))},
        }

    return type("AgentInstance", bases, {"__init__": __init__, "reset": reset, "step": step,
                                         "__doc__": f"OpenRLHF agent instance playing {env_id}."})
