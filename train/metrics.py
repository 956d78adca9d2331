"""Interaction-collapse metrics of one batch of episodes (PyVision-RL watched tool use fade under RL).

Computed over every episode played in the step (before filtering: what the policy does), plus the
filter's pass rates. Names are flat `pyvision/...` keys, logged through TRL's metrics every step.
"""

from __future__ import annotations

from typing import Sequence

from pyvision_env.info import EndReason
from pyvision_train.filtering import Selection
from pyvision_train.rollout import INVALID_OUTPUT, RolloutTimes, Trajectory

PREFIX = "pyvision/"
END_REASONS: tuple[str, ...] = (*(reason.value for reason in EndReason), INVALID_OUTPUT)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def collapse_metrics(trajectories: Sequence[Trajectory], times: RolloutTimes,
                     selection: Selection | None = None) -> dict[str, float]:
    """The step's metrics: tool use, turns, end-reason shares, visual tokens, rewards, times, filters."""
    if not trajectories:
        return {}
    cells = [t.num_code_cells for t in trajectories]
    parts = [t.reward_parts for t in trajectories]
    metrics = {
        "code_cells/mean": _mean(cells),
        "code_cells/max": float(max(cells)),
        "code_cells/zero_share": _mean([float(c == 0) for c in cells]),
        "turns/mean": _mean([t.turns for t in trajectories]),
        "turns/max": float(max(t.turns for t in trajectories)),
        "visual_tokens/mean": _mean([t.visual_tokens for t in trajectories]),
        "images_from_code/mean": _mean([len(t.images) - t.num_prompt_images for t in trajectories]),
        "looked_at_image/share": _mean([float(t.looked_at_image) for t in trajectories]),
        "model_tokens/mean": _mean([t.num_model_tokens for t in trajectories]),
        "reward/total": _mean([t.reward for t in trajectories]),
        "reward/accuracy": _mean([p.get("accuracy", 0.0) for p in parts]),
        "reward/tool": _mean([p.get("tool", 0.0) for p in parts]),
        "correct/share": _mean([float(t.correct) for t in trajectories]),
        "time/generation_s": times.generation,
        "time/env_s": times.env,
        "episodes": float(len(trajectories)),
    }
    for reason in END_REASONS:
        metrics[f"end_reason/{reason}"] = _mean([float(t.end_reason == reason) for t in trajectories])
    if selection is not None:
        metrics["filter/trajectory_pass_rate"] = selection.trajectory_pass_rate
        metrics["filter/group_pass_rate"] = selection.group_pass_rate
        metrics["filter/batch_fill"] = min(selection.num_passed, len(selection.groups)) / len(selection.groups)
    return {PREFIX + name: value for name, value in metrics.items()}
