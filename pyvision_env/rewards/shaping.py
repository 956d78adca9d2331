"""Reward shaping: accuracy plus PyVision-RL's accumulative tool reward."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyvision_env.rewards.graders import Grade
from pyvision_env.rewards.judge import JudgeConfig


@dataclass(frozen=True)
class RewardConfig:
    """How an episode's end reward is put together from its grade and its code cells.

    Attributes:
        tool_reward: paid per executed code cell when the answer is correct
            (PyVision-RL's `tool_using_cumulative_reward_per_turn`, 0.1 in their scripts).
        use_tool_reward: switch the tool reward off entirely (accuracy only).
        max_rewarded_cells: at most this many cells are paid for; None caps at the
            env's turn budget (`max_turns`, given to `compute_reward`).
        judge: an LLM judge for free-text answers the rule graders reject (see
            `pyvision_env.rewards.judge`); None grades by the rules only.
    """

    tool_reward: float = 0.1
    use_tool_reward: bool = True
    max_rewarded_cells: int | None = None
    judge: JudgeConfig | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.tool_reward) or self.tool_reward < 0:
            raise ValueError(
                f"tool_reward must be a finite number >= 0, got {self.tool_reward}; "
                "to switch the tool reward off set use_tool_reward=False"
            )
        cap = self.max_rewarded_cells
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ValueError(
                f"max_rewarded_cells must be an int >= 0 or None, got {cap!r}; "
                "use None to cap at the env's max_turns"
            )


@dataclass(frozen=True)
class RewardParts:
    """An episode's end reward, broken into parts.

    Attributes:
        accuracy: the grade's score, 0..1.
        tool: the accumulative tool reward (0 unless the answer is correct).
        total: accuracy + tool, the scalar reward the env returns.
    """

    accuracy: float
    tool: float
    total: float

    def as_dict(self) -> dict[str, float]:
        """The parts as a plain dict with keys "accuracy", "tool" and "total"."""
        return {"accuracy": self.accuracy, "tool": self.tool, "total": self.total}


def compute_reward(grade: Grade, num_cells: int, config: RewardConfig, max_turns: int) -> RewardParts:
    """The end-of-episode reward for `grade` after `num_cells` executed code cells.

    PyVision-RL's accumulative tool reward: each turn whose code was run earns
    `tool_using_cumulative_reward_per_turn` (the python tool's `execute` returns it both
    for a cell that ran and for one whose user code raised; a turn with no code earns 0:
    `verl/workers/agent/envs/agents_x/safe_persis_python_exe_tool_*.py`). The per-turn
    rewards are summed over the trajectory and added only when the answer is right
    (`if score['is_answer_right']: reward_tensor[i] += env_reward_tensor[i]` in
    `verl/workers/reward_manager/naive.py`). There the cap is implicit in the turn limit;
    here it is `config.max_rewarded_cells`, or `max_turns` when that is None.

    Count in `num_cells` the cells that ran, whether or not the user's code raised;
    leave out cells lost to a sandbox failure.

    Raises:
        ValueError: `num_cells` is negative or `max_turns` is below 1.

    >>> compute_reward(Grade(1.0, True, "B", "match"), 3, RewardConfig(), max_turns=5).as_dict()
    {'accuracy': 1.0, 'tool': 0.30000000000000004, 'total': 1.3}
    """
    if num_cells < 0:
        raise ValueError(f"num_cells must be >= 0, got {num_cells}")
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    tool = 0.0
    if grade.correct and config.use_tool_reward:
        cap = max_turns if config.max_rewarded_cells is None else config.max_rewarded_cells
        tool = config.tool_reward * min(num_cells, cap)
    return RewardParts(accuracy=grade.score, tool=tool, total=grade.score + tool)
