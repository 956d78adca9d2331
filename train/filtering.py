"""PyVision-RL's oversampling-filtering-ranking as pure functions over groups of episode outcomes.

A batch is drawn with more prompt groups than the optimizer step needs. Each trajectory is kept
or dropped by its end reason (and, optionally, by whether code ever showed it an image); a group
whose kept rewards all tie carries no GRPO signal and is dropped whole; the remaining groups are
ranked by the standard deviation of their kept rewards and the first `num_groups` fill the batch.
Groups stay whole: a dropped trajectory stays in its group's slot with `keep=False`, and the
trainer gives it no reward (so it is left out of the group's mean and std) and no loss tokens.

Advantages are computed *after* filtering, over the kept trajectories of a group only. PyVision-RL
computes them before filtering, so a trajectory dropped for infrastructure (a sandbox failure,
reward 0) still lowers its group's baseline and raises the advantage of every other member: the
policy would be paid for our failures. Computing after filtering keeps every advantage a
comparison between answers the policy is accountable for.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Sequence

from pyvision_env.info import EndReason

# Never the policy's doing: our sandbox or judge failed, or the trainer could not use the output.
ALWAYS_DROPPED: frozenset[str] = frozenset(
    {EndReason.SANDBOX_FAILURE.value, EndReason.JUDGE_FAILURE.value, "INVALID_OUTPUT"})
DEFAULT_KEPT_END_REASONS: tuple[str, ...] = (
    EndReason.DONE.value, EndReason.EXCEED_MAX_TURNS.value, EndReason.ERROR_IN_ACTION.value,
)
TIE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class FilterConfig:
    """Which parts of oversampling-filtering-ranking are on.

    Attributes:
        oversample: prompt groups played per group the batch needs (1.0: no oversampling;
            PyVision-RL drew more prompts than the batch used).
        keep_end_reasons: trajectories ending otherwise are dropped. SANDBOX_FAILURE,
            JUDGE_FAILURE (and the trainer's INVALID_OUTPUT) are dropped whatever this says.
        drop_tied_groups: drop groups whose kept rewards all tie (zero std: zero advantage).
        require_image: drop trajectories in which code never showed the model an image.
        rank_by_std: fill the batch with the groups of highest reward std first (else in draw order).
    """

    oversample: float = 1.0
    keep_end_reasons: tuple[str, ...] = DEFAULT_KEPT_END_REASONS
    drop_tied_groups: bool = True
    require_image: bool = False
    rank_by_std: bool = True

    def __post_init__(self) -> None:
        if not self.oversample >= 1.0:
            raise ValueError(f"filter.oversample must be >= 1.0 (1.0 draws no extra prompts), got {self.oversample}")
        known = {reason.value for reason in EndReason}
        unknown = sorted(set(self.keep_end_reasons) - known)
        if unknown:
            raise ValueError(f"filter.keep_end_reasons has unknown end reasons {unknown}; known: {sorted(known)}")
        infrastructure = sorted(ALWAYS_DROPPED & set(self.keep_end_reasons))
        if infrastructure:
            raise ValueError(f"filter.keep_end_reasons cannot keep {infrastructure}: they are not the "
                             "policy's doing; remove them from the list")

    def extra_groups(self, num_groups: int) -> int:
        """How many groups to draw on top of the `num_groups` the batch needs."""
        return int(round(num_groups * (self.oversample - 1.0)))


@dataclass(frozen=True)
class Outcome:
    """What the filter needs to know of one trajectory."""

    reward: float
    end_reason: str
    looked_at_image: bool = False


@dataclass(frozen=True)
class Selection:
    """The groups that fill the batch and which of their trajectories are trained on.

    Attributes:
        groups: indices into the input groups, `num_groups` of them, in batch order.
        keep: for each selected group, one flag per trajectory.
        num_passed: how many groups passed the filters (the rest of the batch is padding:
            groups that failed, every trajectory dropped).
        trajectory_pass_rate: share of all input trajectories that passed the trajectory filters.
        group_pass_rate: share of the input groups that passed.
    """

    groups: tuple[int, ...]
    keep: tuple[tuple[bool, ...], ...]
    num_passed: int
    trajectory_pass_rate: float
    group_pass_rate: float
    dropped_by: dict[str, int] = field(default_factory=dict)


def keep_trajectory(outcome: Outcome, config: FilterConfig) -> bool:
    """Whether a trajectory passes the end-reason and image filters."""
    if outcome.end_reason in ALWAYS_DROPPED or outcome.end_reason not in config.keep_end_reasons:
        return False
    return outcome.looked_at_image or not config.require_image


def kept_reward_std(group: Sequence[Outcome], keep: Sequence[bool]) -> float:
    """Population std of the kept rewards (0 with fewer than two kept)."""
    rewards = [o.reward for o, k in zip(group, keep) if k]
    return statistics.pstdev(rewards) if len(rewards) > 1 else 0.0


def select_groups(groups: Sequence[Sequence[Outcome]], num_groups: int, config: FilterConfig) -> Selection:
    """Filter and rank `groups` and pick `num_groups` of them (see the module docstring).

    A group passes when at least two of its trajectories are kept and, with `drop_tied_groups`,
    their rewards do not all tie. When fewer than `num_groups` pass, the batch is padded with
    failing groups in draw order, all their trajectories dropped.
    """
    if num_groups > len(groups):
        raise ValueError(f"asked for {num_groups} groups out of {len(groups)}")
    keeps = [tuple(keep_trajectory(o, config) for o in group) for group in groups]
    dropped_by: dict[str, int] = {}
    for group, keep in zip(groups, keeps):
        for outcome, kept in zip(group, keep):
            if not kept:
                dropped_by[outcome.end_reason] = dropped_by.get(outcome.end_reason, 0) + 1
    stds = [kept_reward_std(g, k) for g, k in zip(groups, keeps)]
    passed = [
        i for i, keep in enumerate(keeps)
        if sum(keep) >= 2 and not (config.drop_tied_groups and stds[i] <= TIE_TOLERANCE)
    ]
    if config.rank_by_std:
        passed.sort(key=lambda i: -stds[i])  # stable: ties keep draw order
    chosen = passed[:num_groups]
    padding = [i for i in range(len(groups)) if i not in set(passed)][: num_groups - len(chosen)]
    total = sum(len(g) for g in groups)
    return Selection(
        groups=tuple(chosen + padding),
        keep=tuple(keeps[i] for i in chosen) + tuple(tuple(False for _ in groups[i]) for i in padding),
        num_passed=len(passed),
        trajectory_pass_rate=sum(map(sum, keeps)) / total if total else 0.0,
        group_pass_rate=len(passed) / len(groups) if groups else 0.0,
        dropped_by=dropped_by,
    )
