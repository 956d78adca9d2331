"""Resuming a Trainer run of a Qwen2.5-VL: load the checkpoint's weights under the model's names.

`save_pretrained` writes Qwen2.5-VL keys in the original layout (`visual.*`, `model.layers.*`),
and transformers' Trainer loads a checkpoint's state dict by name, so a resumed run kept its
start weights with only a warning about missing keys (transformers#43701). `from_pretrained`
renames the keys; the mixin loads through it.
"""

from __future__ import annotations

from typing import Any


class ResumesWithRenamedKeys:
    """Mixin for a `transformers.Trainer` subclass (before it in the bases): `_load_from_checkpoint`
    reads the checkpoint with `from_pretrained` and copies every weight into the model.

    FSDP, DeepSpeed and adapter (non-`PreTrainedModel`) models keep the Trainer's own loading.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from transformers import PreTrainedModel

        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if not isinstance(target, PreTrainedModel) or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(target).from_pretrained(resume_from_checkpoint, dtype=target.dtype, device_map="cpu",
                                             local_files_only=True)
        target.load_state_dict(saved.state_dict(), strict=True)
