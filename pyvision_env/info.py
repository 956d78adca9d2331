"""Names of the keys in the `info` dict returned by `reset` and `step`, and the end reasons."""

from __future__ import annotations

import enum

MESSAGES = "messages"              # the full chat so far (HF/OpenAI multimodal format)
TURN = "turn"                      # number of model turns taken so far
NUM_CODE_CELLS = "num_code_cells"  # code cells executed so far
NUM_IMAGES = "num_images"          # images in the context so far (prompt images + figures)
VISUAL_TOKENS = "visual_tokens"    # estimated visual tokens of those images
EXEC = "exec"                      # the last cell's execution record, or None
END_REASON = "end_reason"          # an `EndReason` value once the episode is over, else None
ANSWER = "answer"                  # the parsed boxed answer, or None
CORRECT = "correct"                # whether the answer is right (False until answered)
REWARD_PARTS = "reward_parts"      # {"accuracy", "tool", "total"} once over, zeros before
TASK_ID = "task_id"
GROUND_TRUTH = "ground_truth"    # the task's answer once the episode is over, None before
TASK_SOURCE = "task_source"
QUESTION = "question"
CHOICES = "choices"
ANSWER_TYPE = "answer_type"
TASK_EXTRA = "task_extra"          # the task's `extra` (never its answer)
JUDGE_ERROR = "judge_error"        # why the LLM judge gave no verdict (end reason JUDGE_FAILURE), else None


class EndReason(str, enum.Enum):
    """Why an episode ended. `SANDBOX_FAILURE` and `JUDGE_FAILURE` are not the policy's doing."""

    DONE = "DONE"                              # the model gave an answer
    EXCEED_MAX_TURNS = "EXCEED_MAX_TURNS"      # turn budget spent without an answer
    EXCEED_MAX_IMAGES = "EXCEED_MAX_IMAGES"    # image budget spent
    OVER_LENGTH = "OVER_LENGTH"                # context token estimate over budget
    EXCEED_TIME_BUDGET = "EXCEED_TIME_BUDGET"  # episode wall-clock budget spent
    ERROR_IN_ACTION = "ERROR_IN_ACTION"        # with on_error="terminate": bad code or format
    SANDBOX_FAILURE = "SANDBOX_FAILURE"        # infrastructure failure: drop, don't punish
    JUDGE_FAILURE = "JUDGE_FAILURE"            # answered, but the LLM judge gave no verdict: drop
