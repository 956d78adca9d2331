"""An agent over a local transformers checkpoint (Qwen2.5-VL family first), CPU or GPU."""

from __future__ import annotations

from typing import Any

from pyvision_agents.chat import (
    PYTHON_TOOL,
    ModelReply,
    continues_final,
    hf_messages,
    parse_tool_call_text,
    stop_strings,
    trim_after_stop,
)
from pyvision_agents.model import HF_EXTRA, GenerationConfig, ModelAgent, require


class TransformersAgent(ModelAgent):
    """Generates each turn with `model.generate` on a local checkpoint, one batch per turn.

    The prompt is the processor's own chat template (which must render the env's roles; Qwen's
    renders any role, so `observation` messages work); images go through the processor.
    Batches are left-padded; the tag protocol stops at `</code>`; with the tool protocol the
    model's Hermes-style `<tool_call>` text is read as the `python` call.

    Args:
        model_path: a local folder with the model, processor and chat template (nothing is
            downloaded: `local_files_only=True`).
        protocol: "tags" or "tools".
        generation: sampling settings.
        name: the agent's name in results (default `transformers:<model_path>`).
        device: "cpu", "cuda", "cuda:1", ... or "auto" (CUDA when available).
        dtype: torch dtype name ("auto", "float32", "bfloat16", ...).
        batch_size: conversations per `generate` call at most.
    """

    requires = {"torch": HF_EXTRA, "transformers": HF_EXTRA}

    def __init__(
        self,
        model_path: str,
        *,
        protocol: str = "tags",
        generation: GenerationConfig | None = None,
        name: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
    ) -> None:
        super().__init__(name or f"transformers:{model_path}", protocol, generation)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.torch = require("torch")
        transformers = require("transformers")
        self.device = ("cuda" if self.torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = batch_size
        self.processor = transformers.AutoProcessor.from_pretrained(model_path, local_files_only=True)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        self.model = transformers.AutoModelForImageTextToText.from_pretrained(
            model_path, local_files_only=True, dtype=dtype
        ).to(self.device).eval()

    def _generate(self, conversations):
        replies: list[ModelReply] = []
        for start in range(0, len(conversations), self.batch_size):
            replies += self._generate_batch(conversations[start : start + self.batch_size])
        return replies

    def render(self, conversation: list[dict[str, Any]]) -> tuple[str, list[Any]]:
        """The prompt text for one conversation (the chat template applied) and its images."""
        from PIL import Image

        messages, images = hf_messages(conversation)
        cont = continues_final(conversation)
        text = self.processor.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=not cont,
            continue_final_message=cont,
            tools=[PYTHON_TOOL] if self.protocol == "tools" else None,
        )
        return text, [Image.fromarray(image) for image in images]

    def _generate_batch(self, conversations) -> list[ModelReply]:
        rendered = [self.render(conversation) for conversation in conversations]
        texts = [text for text, _ in rendered]
        images = [image for _, batch in rendered for image in batch]
        inputs = self.processor(
            text=texts, images=images or None, padding=True, return_tensors="pt"
        ).to(self.device)
        gen = self.generation
        sampling = (
            {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p}
            if gen.temperature > 0 else {"do_sample": False}
        )
        stops = stop_strings(self.protocol)
        with self.torch.random.fork_rng(), self.torch.inference_mode():  # no global reseeding
            if gen.seed is not None:
                self.torch.manual_seed(gen.seed)
            output = self.model.generate(
                **inputs,
                max_new_tokens=gen.max_new_tokens,
                stop_strings=stops or None,
                tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [self._reply(text, stops) for text in decoded]

    def _reply(self, text: str, stops: list[str]) -> ModelReply:
        if self.protocol == "tools":
            return parse_tool_call_text(text)
        return ModelReply(trim_after_stop(text, stops))
