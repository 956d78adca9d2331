"""Build the trainer from a `TrainConfig` and run it, resuming from the run's last checkpoint."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pyvision_train.config import ConfigError, TrainConfig

METRICS_FILE = "metrics.jsonl"


def prompt_rows(env_id: str, seeds: range, by_task_index: bool = False) -> list[dict[str, Any]]:
    """The dataset TRL iterates: one row per episode start; the env renders the real prompt.

    Each row names the env id and a seed; with `by_task_index` the seed is also the index of the
    task to play in the env's data file (else `task_index` is -1 and the env draws the task).
    """
    return [{"prompt": f"{env_id} {'task' if by_task_index else 'seed'}={seed}", "env_id": env_id,
             "seed": seed, "task_index": seed if by_task_index else -1} for seed in seeds]


def dataset_rows(config: TrainConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and validation rows: seeds for built-in families; with `env.data_path`, the file's
    tasks in order (the last `eval_prompts` validate; up to `train_prompts` of the rest train)."""
    from pyvision_env.tasks.sources import DatasetTasks

    data, env_id = config.data, config.env.id
    if config.env.data_path is None:
        return (prompt_rows(env_id, range(data.seed, data.seed + data.train_prompts)),
                prompt_rows(env_id, range(data.eval_seed, data.eval_seed + data.eval_prompts)))
    total = len(DatasetTasks.from_file(config.env.data_path))
    if data.eval_prompts >= total:
        raise ConfigError(f"{config.env.data_path} has {total} tasks: holding out {data.eval_prompts} for "
                          "validation leaves none to train on; lower data.eval_prompts")
    train = min(data.train_prompts, total - data.eval_prompts)
    return (prompt_rows(env_id, range(train), by_task_index=True),
            prompt_rows(env_id, range(total - data.eval_prompts, total), by_task_index=True))


def build_trainer(config: TrainConfig, trainer_class: type | None = None):
    """A `PyVisionGRPOTrainer` (or the subclass `trainer_class`) for `config`, model loaded from
    `config.model.path`."""
    import gymnasium as gym
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback

    import pyvision_env  # noqa: F401  (registers the env ids)
    from pyvision_train.rollout import ChatCodec, EpisodeRunner
    from pyvision_train.trainer import PyVisionGRPOTrainer

    args = config.grpo_config()
    train_rows, eval_rows = dataset_rows(config)
    per_batch = args.generation_batch_size // args.num_generations
    if len(train_rows) < per_batch:
        raise ConfigError(
            f"{len(train_rows)} training prompt(s), fewer than one generation batch takes ({per_batch}: "
            f"generation_batch_size {args.generation_batch_size} / num_generations {args.num_generations}), "
            "so the run would train 0 steps: raise data.train_prompts or lower grpo.per_device_train_batch_size")
    processor = AutoProcessor.from_pretrained(config.model.path, local_files_only=True, padding_side="left")
    model = AutoModelForImageTextToText.from_pretrained(config.model.path, local_files_only=True,
                                                        dtype=config.model.dtype)
    if config.model.freeze_vision_tower:
        freeze_vision_tower(model)
    codec = ChatCodec(processor, config.rollout.protocol)

    def make_runner(mode: str) -> EpisodeRunner:
        rollout = config.rollout
        return EpisodeRunner(codec, functools.partial(gym.make, **config.env.env_kwargs(mode)),
                             num_workers=rollout.num_workers, max_context_tokens=rollout.max_context_tokens,
                             eos_ids=trainer.eos_token_ids, num_env_workers=rollout.num_env_workers,
                             ray_address=rollout.ray_address)

    class JsonlMetrics(TrainerCallback):
        """Appends every log record to `<output_dir>/metrics.jsonl` (main process only)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                path = Path(args.output_dir) / METRICS_FILE
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as handle:
                    handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    trainer = (trainer_class or PyVisionGRPOTrainer)(
        make_runner=make_runner,
        filter_config=config.filter,
        codec=codec,
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=processor,
        callbacks=[JsonlMetrics()],
    )
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.element_size() < 4})
    if low and not trainer.is_deepspeed_enabled:
        raise ConfigError(
            f"model.dtype {config.model.dtype!r} gives trainable {', '.join(low)} weights, which the optimizer "
            "would update in place: steps below half a rounding step (most weights at lr 1e-6) are lost, so "
            "training silently stalls. Set model.dtype: float32 (grpo.bf16: true still computes in bf16), or "
            "launch with DeepSpeed (its optimizer keeps fp32 master weights)")
    return trainer


def freeze_vision_tower(model) -> int:
    """Stop gradients into the vision encoder (parameters under a `visual` module); return how many."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if "visual" in name.split("."):
            parameter.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError("model.freeze_vision_tower: no parameters under a 'visual' module in this "
                         "model; set model.freeze_vision_tower: false")
    return frozen


def train(config: TrainConfig) -> dict[str, Any]:
    """Run SFT (when configured; GRPO then starts from its output) and GRPO; a run folder with
    checkpoints resumes from the last one."""
    from transformers.trainer_utils import get_last_checkpoint

    if config.sft is not None:
        from pyvision_train.sft import train_sft

        sft_model = train_sft(**config.sft)
        config = replace(config, model=replace(config.model, path=str(sft_model)))  # RL starts there
    output = Path(config.output_dir)
    last = get_last_checkpoint(str(output)) if output.is_dir() else None
    trainer = build_trainer(config)
    try:
        result = trainer.train(resume_from_checkpoint=last)
        trainer.save_model(str(output / "final"))
    finally:
        trainer.close()
    return {"global_step": result.global_step, "training_loss": result.training_loss,
            "resumed_from": last}
