"""Rewards: rule graders for each answer type, the LLM judge, and the shaping that turns a grade into
a reward.

`GRADING_MODES`, `normalize_text` and `parse_number` live in `pyvision_env.answers` (shared with
the task loaders) and are re-exported here.
"""

from pyvision_env.answers import GRADING_MODES, normalize_text, parse_number
from pyvision_env.rewards.graders import (
    MRA_CORRECT_ABOVE,
    MRA_THRESHOLDS,
    Gradable,
    Grade,
    grade,
    grade_choice,
    grade_number,
    grade_text,
    mean_relative_accuracy,
)
from pyvision_env.rewards.judge import JudgeConfig
from pyvision_env.rewards.shaping import RewardConfig, RewardParts, compute_reward

__all__ = [
    "GRADING_MODES",
    "MRA_CORRECT_ABOVE",
    "MRA_THRESHOLDS",
    "Gradable",
    "Grade",
    "JudgeConfig",
    "RewardConfig",
    "RewardParts",
    "compute_reward",
    "grade",
    "grade_choice",
    "grade_number",
    "grade_text",
    "mean_relative_accuracy",
    "normalize_text",
    "parse_number",
]
