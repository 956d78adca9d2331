"""An agent over vLLM's offline engine (`vllm.LLM`): every active episode in one `chat` call, on GPU."""

from __future__ import annotations

from typing import Any

from pyvision_agents.chat import (
    PYTHON_TOOL,
    ModelReply,
    continues_final,
    openai_messages,
    parse_tool_call_text,
    stop_strings,
)
from pyvision_agents.model import GenerationConfig, ModelAgent, require

VLLM_INSTALL = "pip install vllm (on a machine with a CUDA GPU)"


class VLLMAgent(ModelAgent):
    """Generates each turn with `vllm.LLM.chat` over the batch of active episodes.

    The engine is built once with `limit_mm_per_prompt={"image": max_images}` (the env's image
    budget, so a full episode always fits). Images go as PNG data URLs in OpenAI-style content
    parts, which vLLM's chat parser reads offline; the model's chat template renders the env's
    roles. The tag protocol stops at `</code>` (kept in the output); with the tool protocol the
    model's Hermes-style `<tool_call>` text is read as the `python` call.

    Args:
        model_path: a local model folder (nothing is downloaded).
        protocol: "tags" or "tools".
        generation: sampling settings.
        name: the agent's name in results (default `vllm:<model_path>`).
        max_images: images per prompt the engine must accept (the env's `max_images`).
        max_model_len: context length (None: the model's).
        tensor_parallel_size: GPUs to shard the model over.
        gpu_memory_utilization: share of GPU memory vLLM may take.
        engine_kwargs: any other `vllm.LLM` / `EngineArgs` arguments.
    """

    requires = {"vllm": VLLM_INSTALL}

    def __init__(
        self,
        model_path: str,
        *,
        protocol: str = "tags",
        generation: GenerationConfig | None = None,
        name: str | None = None,
        max_images: int = 32,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name or f"vllm:{model_path}", protocol, generation)
        vllm = require("vllm", VLLM_INSTALL)
        kwargs: dict[str, Any] = {
            "model": model_path,
            "limit_mm_per_prompt": {"image": max_images},
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": self.generation.seed or 0,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(engine_kwargs or {})
        self.llm = vllm.LLM(**kwargs)
        gen = self.generation
        self.sampling_params = vllm.SamplingParams(
            max_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            seed=gen.seed,
            stop=stop_strings(self.protocol) or None,
            include_stop_str_in_output=True,
        )

    def _generate(self, conversations):
        replies: list[ModelReply | None] = [None] * len(conversations)
        for cont in (False, True):  # the env's inline form continues the assistant message
            indices = [i for i, c in enumerate(conversations) if continues_final(c) == cont]
            if not indices:
                continue
            outputs = self.llm.chat(
                [openai_messages(conversations[i]) for i in indices],
                sampling_params=self.sampling_params,
                use_tqdm=False,
                add_generation_prompt=not cont,
                continue_final_message=cont,
                tools=[PYTHON_TOOL] if self.protocol == "tools" else None,
            )
            for i, output in zip(indices, outputs, strict=True):
                text = output.outputs[0].text
                replies[i] = parse_tool_call_text(text) if self.protocol == "tools" else ModelReply(text)
        return replies
