"""A stand-in for verl's agent-loop module (verl cannot be installed on these machines).

It mirrors verl 0.9.1's `verl/experimental/agent_loop/agent_loop.py`: `AgentLoopOutput` has the
same pydantic fields and types, `register` the same registry entry (`{"_target_": fqdn}`), and
`AgentLoopBase` the attributes an agent loop reads (`server_manager`, `processor`,
`rollout_config.response_length`) and the abstract `async run(sampling_params, **kwargs)`.
The server's `generate(request_id=..., prompt_ids=..., sampling_params=..., image_data=...)`
returns a `TokenOutput` with `token_ids` and `log_probs`, as verl's `LLMServerClient.generate`.
"""

from __future__ import annotations

import sys
import types
from abc import ABC, abstractmethod
from typing import Any, Optional

from pydantic import BaseModel


class AgentLoopMetrics(BaseModel):
    generate_sequences: float = 0.0
    tool_calls: float = 0.0
    compute_score: float = 0.0
    num_preempted: int = -1


class AgentLoopOutput(BaseModel):
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    response_logprobs: Optional[list[float]] = None
    routed_experts: Optional[Any] = None
    multi_modal_data: Optional[dict[str, Any]] = None
    reward_score: Optional[float] = None
    num_turns: int = 0
    metrics: AgentLoopMetrics
    extra_fields: dict[str, Any] = {}


class AgentLoopBase(ABC):
    def __init__(self, server_manager: Any, processor: Any, rollout_config: Any, **kwargs: Any) -> None:
        self.server_manager = server_manager
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.rollout_config = rollout_config

    @abstractmethod
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput: ...


_agent_loop_registry: dict[str, dict] = {}


def register(agent_name: str):
    def decorator(subclass):
        _agent_loop_registry[agent_name] = {"_target_": f"{subclass.__module__}.{subclass.__qualname__}"}
        return subclass

    return decorator


def install() -> types.ModuleType:
    """Put the stand-in at `verl.experimental.agent_loop.agent_loop` in `sys.modules`."""
    names = ["verl", "verl.experimental", "verl.experimental.agent_loop",
             "verl.experimental.agent_loop.agent_loop"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    module = sys.modules[names[-1]]
    module.AgentLoopBase, module.AgentLoopOutput, module.register = AgentLoopBase, AgentLoopOutput, register
    module._agent_loop_registry = _agent_loop_registry
    return module
