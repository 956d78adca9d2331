"""`PyVisionGRPOTrainer`: TRL's GRPOTrainer with multi-turn env episodes as completions.

TRL keeps its loss, optimizer, advantages, logging and checkpointing. This subclass replaces two
private hooks of trl 1.16.0 (pinned exactly; `tests/train/test_trl_contract.py` guards them):

- `_generate_and_score_completions(inputs)`: before TRL scores the batch, play one episode per
  completion (oversampled groups included), filter and rank the groups, and hand TRL only the
  rows of the chosen groups.
- `_generate(prompts)`: return those episodes as TRL's 8-tuple (prompt ids, completion ids,
  tool mask, completions, logprobs, extra fields, images, tool images).

Why not `rollout_func` or `environment_factory`: images produced by code do not reach the
training forward pass through `rollout_func` (TRL sets `images = None` there), and TRL's own tool
loop behind `environment_factory` cannot end an episode or report why it ended, which the
filters and the reward need. See docs/training.md.

A resumed run loads its checkpoint's weights through `ResumesWithRenamedKeys` (transformers'
Trainer kept a Qwen2.5-VL's start weights: see `pyvision_train.resume`).

Images in the completion reach the forward pass through TRL's tool-image branch, gated on
`self.tools` being non-empty: the trainer sets `self.tools` to the python tool for that gate only
(TRL's own tool loop never runs, since `_generate` is replaced). Image tokens are checked against
image features before TRL sees them: TRL would silently drop every image of the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from trl import GRPOTrainer

from pyvision_train.filtering import ALWAYS_DROPPED, FilterConfig, Outcome, Selection, select_groups
from pyvision_train.metrics import collapse_metrics
from pyvision_train.resume import ResumesWithRenamedKeys
from pyvision_train.rollout import (
    ChatCodec,
    EpisodeRunner,
    EpisodeStart,
    Trajectory,
    TurnOutput,
    TurnRequest,
    image_token_mismatch,
)


def python(code: str) -> str:
    """Run Python code in the episode's sandbox (played by the env; TRL never calls this).

    Args:
        code: the Python code to run.
    """
    raise RuntimeError("the env runs code cells; TRL's tool loop must not run under PyVisionGRPOTrainer")


def env_reward(completions: list, env_reward: list[float], keep: list[bool], **_: Any) -> list[float | None]:
    """The env's episode reward (accuracy + tool reward); None for a dropped trajectory, so TRL
    leaves it out of its group's mean and std and gives it advantage 0."""
    return [reward if kept else None for reward, kept in zip(env_reward, keep)]


class _DroppedRowsAreIntended(logging.Filter):
    """Hides TRL's per-batch warning about rows with no reward: dropped trajectories are meant to
    have none (the warning would print a whole multi-turn completion every step)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "All reward functions returned None" not in record.getMessage()


_QUIET = _DroppedRowsAreIntended()


@dataclass
class _Pending:
    trajectories: list[Trajectory]
    keep: list[bool]


class PyVisionGRPOTrainer(ResumesWithRenamedKeys, GRPOTrainer):
    """GRPO where each completion is a whole env episode (see the module docstring).

    Args:
        make_runner: builds the episode runner for a mode ("train" or "eval"): the env turn budgets
            differ (PyVision-RL: 5 in training, 30 in validation).
        filter_config: oversampling-filtering-ranking settings (training only).
        codec: the chat codec over the processing class.
        **kwargs: passed to `trl.GRPOTrainer` (model, args, train_dataset, processing_class, ...).
    """

    def __init__(self, *, make_runner: Callable[[str], EpisodeRunner], filter_config: FilterConfig,
                 codec: ChatCodec, **kwargs: Any) -> None:
        super().__init__(reward_funcs=[env_reward], **kwargs)
        logging.getLogger("trl.trainer.grpo_trainer").addFilter(_QUIET)  # idempotent: one filter object
        self.tools = [python]  # opens TRL's forward branch for completion images (see module docstring)
        if not self.use_vllm:  # TRL suppresses <|image_pad|> only; any vision token breaks the pairing
            suppressed = set(self.generation_config.suppress_tokens or []) | codec.vision_ids
            self.generation_config.suppress_tokens = sorted(suppressed)
        self.codec = codec
        self.filter_config = filter_config
        self._make_runner = make_runner
        self._runners: dict[str, EpisodeRunner] = {}
        self._pending: _Pending | None = None

    def close(self) -> None:
        """Close every env and its sandbox."""
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()

    # ------------------------------------------------------------------ TRL hooks

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        size = self.num_generations if mode == "train" else self.num_generations_eval
        groups = _whole_groups(inputs, size)
        drawn = groups + (self._extra_groups(len(groups), size) if mode == "train" else [])
        starts = [_start(row) for group in drawn for row in group]
        if mode not in self._runners:
            self._runners[mode] = self._make_runner(mode)
        trajectories, times = self._runners[mode].run(starts, self._generate_turns)
        played = [trajectories[i: i + size] for i in range(0, len(trajectories), size)]
        selection = self._select(played, len(groups), mode)
        for name, value in self._gathered(collapse_metrics(trajectories, times, selection)).items():
            self._metrics[mode][name].append(value)
        chosen = [row for g in selection.groups for row in drawn[g]]
        self._pending = _Pending(
            trajectories=[t for g in selection.groups for t in played[g]],
            keep=[k for keep in selection.keep for k in keep],
        )
        return super()._generate_and_score_completions(chosen)

    def _generate(self, prompts: list) -> tuple:
        pending, self._pending = self._pending, None
        if pending is None or len(pending.trajectories) != len(prompts):
            raise RuntimeError("_generate runs only inside PyVisionGRPOTrainer._generate_and_score_completions")
        for trajectory in pending.trajectories:
            problem = image_token_mismatch(trajectory, self.codec)
            if problem is not None:
                raise RuntimeError(f"image tokens and image features disagree ({problem}); TRL would "
                                   "silently drop every image of the batch")
        trajectories, keep = pending.trajectories, pending.keep
        prompt_ids = [t.prompt_ids for t in trajectories]
        completion_ids = [t.completion_ids for t in trajectories]
        tool_mask = [t.tool_mask if kept else [0] * len(t.tool_mask) for t, kept in zip(trajectories, keep)]
        completions = [self.codec.decode(t.completion_ids) for t in trajectories]
        logprobs = ([t.logprobs for t in trajectories]
                    if all(t.logprobs is not None for t in trajectories) else None)
        extra_fields = {
            "env_reward": [t.reward for t in trajectories],
            "keep": list(keep),
            "end_reason": [t.end_reason for t in trajectories],
        }
        any_images = any(t.images for t in trajectories)
        images = [list(t.images) or None for t in trajectories] if any_images else None
        tool_images = [list(t.images) for t in trajectories] if any_images else []
        self._log_lengths(prompt_ids, [t.tool_mask for t, kept in zip(trajectories, keep) if kept])
        return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields, images, tool_images

    # ------------------------------------------------------------------ pieces

    def _generate_turns(self, requests: list[TurnRequest]) -> list[TurnOutput]:
        """One model turn for each running episode, through TRL's generation (HF or vLLM)."""
        import torch

        has_images = any(r.images for r in requests)
        fields: dict[str, Any] = {}
        images = None
        if has_images and self.use_vllm:
            images = [r.images or None for r in requests]
        elif has_images:
            fields = {
                "pixel_values": torch.cat([r.pixel_values for r in requests if r.pixel_values is not None]),
                "image_grid_thw": torch.cat([r.image_grid_thw for r in requests if r.image_grid_thw is not None]),
            }
        ids, logprobs = self._generate_single_turn(
            [r.ids for r in requests], images, fields, 1, has_tool_images=has_images
        )
        return [TurnOutput(list(i), None if logprobs is None else list(lp))
                for i, lp in zip(ids, logprobs if logprobs is not None else [None] * len(ids))]

    def _extra_groups(self, num_groups: int, size: int) -> list[list[dict[str, Any]]]:
        """Oversampled prompt groups, drawn from the training set by (seed, step, process): a resumed
        run draws the same ones. Each row is a dict of its own: TRL writes every trajectory's reward
        and keep flag into its row, so rows sharing one dict would all score as the group's last."""
        count = self.filter_config.extra_groups(num_groups)
        if count == 0:
            return []
        rng = np.random.default_rng([self.args.seed, self.state.global_step, self.accelerator.process_index])
        rows = rng.integers(len(self.train_dataset), size=count)
        return [[dict(self.train_dataset[int(i)]) for _ in range(size)] for i in rows]

    def _select(self, played: list[list[Trajectory]], num_groups: int, mode: str) -> Selection:
        if mode == "train":
            outcomes = [[Outcome(t.reward, t.end_reason or "", t.looked_at_image) for t in g] for g in played]
            return select_groups(outcomes, num_groups, self.filter_config)
        keep = tuple(tuple(t.end_reason not in ALWAYS_DROPPED for t in g) for g in played[:num_groups])
        total = sum(len(g) for g in keep)
        return Selection(tuple(range(num_groups)), keep, num_groups,
                         sum(map(sum, keep)) / total if total else 0.0, 1.0)

    def _gathered(self, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics over every process (each plays the same number of episodes): the max of
        `.../max` metrics, the mean of the others."""
        import torch

        if self.accelerator.num_processes == 1 or not metrics:
            return metrics
        names = list(metrics)  # the same order on every rank
        local = torch.tensor([metrics[n] for n in names], device=self.accelerator.device)
        table = self.accelerator.gather(local).view(self.accelerator.num_processes, len(names))
        return {n: (table[:, k].max() if n.endswith("/max") else table[:, k].mean()).item()
                for k, n in enumerate(names)}

    def _log_lengths(self, prompt_ids: Sequence[list[int]], kept_masks: Sequence[list[int]]) -> None:
        """The token counts TRL's own `_generate` logs, over every process: model tokens of the
        kept trajectories (dropped and padding rows train no token and would pull the mean down)."""
        from accelerate.utils import gather_object

        mode = "train" if self.model.training else "eval"
        local = [sum(mask) for mask in kept_masks]
        model_tokens = gather_object(local)  # the list itself on one process
        if mode == "train":
            self.state.num_input_tokens_seen += sum(gather_object([sum(map(len, prompt_ids)) + sum(local)]))
        self._metrics[mode]["num_tokens"] = [self.state.num_input_tokens_seen]
        if model_tokens:
            self._metrics[mode]["completions/mean_length"].append(float(np.mean(model_tokens)))
            self._metrics[mode]["completions/max_length"].append(float(np.max(model_tokens)))


def _whole_groups(inputs: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Split TRL's batch (each prompt repeated `size` times in a row) into its groups."""
    if len(inputs) % size:
        raise RuntimeError(f"a batch of {len(inputs)} rows is not whole groups of {size}: set "
                           "per_device_train_batch_size * steps_per_generation to a multiple of num_generations")
    groups = [inputs[i: i + size] for i in range(0, len(inputs), size)]
    for group in groups:
        if len({_start(row) for row in group}) != 1:
            raise RuntimeError("a group mixes prompts: TRL's sampler no longer repeats each prompt "
                               "num_generations times in a row (check the pinned trl version)")
    return groups


def _start(row: dict[str, Any]) -> EpisodeStart:
    """The episode a dataset row names (`task_index` -1: the env draws a task with the seed)."""
    index = int(row.get("task_index", -1))
    return EpisodeStart(row["env_id"], int(row["seed"]), index if index >= 0 else None)
