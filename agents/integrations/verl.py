"""verl's agent loop over a pyvision-env env: `PyVisionAgentLoop`, registered as "pyvision_agent".

Use it from a verl config (verl >= 0.5's `actor_rollout_ref.rollout.agent`): point
`agent_loop_config_path` at a YAML file holding

    - name: pyvision_agent
      _target_: pyvision_agents.integrations.verl.PyVisionAgentLoop

and give each dataset row `agent_name: pyvision_agent` plus, optionally, `env_id` (default
PyVisionImage-v0), `seed` and `env_kwargs` (a dict for `gym.make`). Images produced by code reach
the training forward pass through `multi_modal_data["images"]`.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

try:
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
except ImportError as error:  # the adapter is only for verl users
    raise ImportError(f"pyvision_agents.integrations.verl needs verl ({error}): pip install verl") from error

from pyvision_agents.integrations.messages import MessageEnv
from pyvision_agents.integrations.tokens import TokenTrajectory, rollout_tokens

DEFAULT_ENV_ID = "PyVisionImage-v0"


@register("pyvision_agent")
class PyVisionAgentLoop(AgentLoopBase):
    """Plays one pyvision-env episode per dataset row against verl's LLM server."""

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        env = MessageEnv(kwargs.get("env_id") or DEFAULT_ENV_ID, **dict(kwargs.get("env_kwargs") or {}))
        request_id = uuid4().hex  # one id per episode: verl keeps its turns on one server

        async def generate(prompt_ids: list[int], images: list[Any]):
            output = await self.server_manager.generate(
                request_id=request_id, prompt_ids=prompt_ids, sampling_params=sampling_params,
                image_data=images or None,
            )
            return output.token_ids, output.log_probs

        seed = kwargs.get("seed")
        try:
            trajectory = await rollout_tokens(
                env, self.processor, generate, seed=None if seed is None else int(seed),
                max_response_tokens=self.rollout_config.response_length,
            )
        finally:
            env.close()
        return _output(trajectory)


def _output(trajectory: TokenTrajectory) -> AgentLoopOutput:
    info = trajectory.info
    return AgentLoopOutput(
        prompt_ids=trajectory.prompt_ids,
        response_ids=trajectory.response_ids,
        response_mask=trajectory.response_mask,
        response_logprobs=trajectory.response_logprobs,
        multi_modal_data={"images": trajectory.images},
        reward_score=trajectory.reward,
        num_turns=len(info.get("messages", ())),  # user, assistant and observation messages
        metrics={},
        extra_fields={"end_reason": trajectory.end_reason, "task_id": info.get("task_id"),
                      "num_code_cells": info.get("num_code_cells", 0), "correct": bool(info.get("correct"))},
    )
