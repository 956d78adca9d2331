"""SFT warm start: TRL's `SFTTrainer` on an `export-sft` dataset, loss on the assistant turns only.

A model that does not know the PyVision protocol learns it here before RL (PyVision-RL trained
SFT before RL). The dataset is what `pyvision-env export-sft` writes: a `messages` column (roles
`user`, `assistant`, and `observation` for interpreter output, PyVision-RL form) and an `images`
column. TRL's stock vision collator accepts only the roles system/user/assistant/tool, so the
chats are batched by `AssistantOnlyCollator`: it renders each chat with a training chat template
whose `{% generation %}` markers wrap the assistant turns (TRL's patched template for a known
model, e.g. Qwen2.5-VL, or one you pass) and sets every other label to -100. The prompt, the
observations and the image tokens are never trained on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

DONE_FILE = "sft.json"  # written last: its presence means the SFT stage finished in that folder
IGNORE_INDEX = -100


@dataclass
class AssistantOnlyCollator:
    """Batches export rows into model inputs whose labels cover the assistant turns only.

    Attributes:
        processor: the model's processor (tokenizer + image processor).
        chat_template: a chat template with `{% generation %}` markers around the assistant
            content (see `training_chat_template`).
    """

    processor: Any
    chat_template: str

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        chats = [with_images(example["messages"], example["images"]) for example in examples]
        batch = self.processor.apply_chat_template(
            chats,
            chat_template=self.chat_template,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            return_assistant_tokens_mask=True,
            processor_kwargs={"padding": True, "padding_side": "right", "add_special_tokens": False},
        )
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        labels[batch.pop("assistant_masks") == 0] = IGNORE_INDEX
        if not (labels != IGNORE_INDEX).any(dim=1).all():
            raise ValueError("a row has no assistant tokens under the chat template's {% generation %} "
                             "markers: check the template wraps the assistant turns")
        batch["labels"] = labels
        return dict(batch)


def with_images(messages: Sequence[Mapping[str, Any]], images: Sequence[Any]) -> list[dict[str, Any]]:
    """The chat with each `{"type": "image"}` placeholder holding its image (RGB PIL), in order.

    Raises:
        ValueError: placeholders and images differ in number.
    """
    remaining = list(images)
    chat = []
    for message in messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                if not remaining:
                    raise ValueError("more image placeholders than images in a row")
                content.append({"type": "image", "image": remaining.pop(0).convert("RGB")})
            else:
                content.append({"type": "text", "text": part["text"]})
        chat.append({"role": message["role"], "content": content})
    if remaining:
        raise ValueError(f"{len(remaining)} image(s) in a row have no placeholder")
    return chat


def training_chat_template(processor: Any, chat_template: str | Path | None = None) -> str:
    """The chat template to train with: `chat_template` (a template, or a .jinja file) when given,
    else the processor's own when it has `{% generation %}` markers, else TRL's training variant
    of it (known models: Qwen2.5-VL, Qwen3-VL, ...).

    Raises:
        ValueError: none of these has generation markers.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if chat_template is not None:
        text = str(chat_template)
        if text.endswith((".jinja", ".j2")):
            text = Path(text).read_text()
    elif has_generation_markers(processor.chat_template):
        text = processor.chat_template
    else:
        try:
            text = get_training_chat_template(processor) or ""
        except ValueError:
            text = ""
    if not has_generation_markers(text):
        raise ValueError("no chat template with {% generation %} markers for this model, so the assistant "
                         "turns cannot be told apart: pass chat_template= (a template or a .jinja file) that "
                         "wraps each assistant turn in {% generation %}...{% endgeneration %}")
    return text


def load_sft_dataset(dataset_dir: str | Path):
    """The dataset `pyvision-env export-sft` wrote (a `datasets.Dataset`).

    Raises:
        FileNotFoundError: not such a folder.
    """
    from datasets import load_from_disk

    path = Path(dataset_dir)
    if not (path / "dataset_info.json").exists():
        raise FileNotFoundError(f"{path} is not an SFT dataset: write one with "
                                f"`pyvision-env export-sft --out {path}`")
    dataset = load_from_disk(str(path))
    missing = {"messages", "images"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"{path} has no {sorted(missing)} column(s): write it with `pyvision-env export-sft`")
    return dataset


def train_sft(
    model_path: str | Path,
    dataset_dir: str | Path,
    output_dir: str | Path,
    *,
    epochs: float = 1.0,
    learning_rate: float = 1e-5,
    batch_size: int = 1,
    max_steps: int = -1,
    chat_template: str | Path | None = None,
    freeze_vision_tower: bool = False,
    seed: int = 0,
    trainer_args: Mapping[str, Any] | None = None,
) -> Path:
    """Fine-tune `model_path` on the export at `dataset_dir`; save the model and its processor
    to `output_dir` and return it (load it with `from_pretrained`, e.g. as the GRPO policy).

    The loss covers the assistant turns only (see `AssistantOnlyCollator`). Rows are not
    truncated (a cut would split image tokens from their features). `trainer_args` go to
    `trl.SFTConfig` as they are (e.g. `gradient_accumulation_steps`, `save_steps`, `bf16`,
    `report_to`). On a machine without CUDA the run uses the CPU in float32. A folder with a
    finished SFT stage of the same model and dataset (its `sft.json`) is returned as it is, so a
    restarted pipeline does not train twice; a killed SFT run resumes from its last `checkpoint-*`.

    Raises:
        ValueError: bad settings, an empty dataset, no usable chat template, or `output_dir`
            holding a finished SFT of another model or dataset.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from pyvision_train.resume import ResumesWithRenamedKeys

    class _SFTTrainer(ResumesWithRenamedKeys, SFTTrainer):
        """SFTTrainer whose resumed run loads the checkpoint's weights."""

    output = Path(output_dir)
    if (output / DONE_FILE).exists():
        done = json.loads((output / DONE_FILE).read_text())
        if (done["model_path"], done["dataset_dir"]) != (str(model_path), str(dataset_dir)):
            raise ValueError(f"{output} holds a finished SFT of {done['model_path']} on {done['dataset_dir']}, "
                             "not of this model and dataset: choose another output_dir")
        return output
    if not (epochs > 0 and learning_rate > 0 and batch_size >= 1):
        raise ValueError(f"epochs, learning_rate and batch_size must be positive, got {epochs}, "
                         f"{learning_rate}, {batch_size}")
    dataset = load_sft_dataset(dataset_dir)
    if len(dataset) == 0:
        raise ValueError(f"{dataset_dir} has no rows: export episodes with `pyvision-env export-sft`")
    processor = AutoProcessor.from_pretrained(str(model_path))
    collator = AssistantOnlyCollator(processor, training_chat_template(processor, chat_template))
    cuda = torch.cuda.is_available()
    # fp32 weights (bf16 compute on CUDA via `bf16`): AdamW on bf16 weights loses small updates
    model = AutoModelForImageTextToText.from_pretrained(str(model_path), dtype=torch.float32)
    if freeze_vision_tower:
        from pyvision_train.run import freeze_vision_tower as freeze

        freeze(model)
    args = SFTConfig(**{
        "output_dir": str(output), "num_train_epochs": epochs, "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size, "max_steps": max_steps, "seed": seed,
        "logging_steps": 1, "save_strategy": "no", "report_to": [], "remove_unused_columns": False,
        "max_length": None, "gradient_checkpointing": False, "use_cpu": not cuda, "bf16": cuda,
        **(trainer_args or {}),
    })
    trainer = _SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                          data_collator=collator)
    last = get_last_checkpoint(str(output)) if output.is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)
    if not math.isfinite(result.training_loss):
        raise FloatingPointError(f"SFT loss is {result.training_loss}: lower the learning rate")
    trainer.save_model(str(output))
    processor.save_pretrained(str(output))
    trainer.save_state()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    (output / DONE_FILE).write_text(json.dumps({
        "model_path": str(model_path), "dataset_dir": str(dataset_dir), "rows": len(dataset),
        "steps": result.global_step, "training_loss": result.training_loss, "losses": losses,
    }, indent=2) + "\n")
    return output
