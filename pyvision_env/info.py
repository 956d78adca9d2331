"""Names of the keys in the `info` dict returned by `reset` and `step`, the end reasons, and
the typed record behind `info["exec"]`."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

MESSAGES = "messages"              # the full chat so far (HF/OpenAI multimodal format)
TURN = "turn"                      # number of model turns taken so far
NUM_CODE_CELLS = "num_code_cells"  # code cells executed so far
NUM_IMAGES = "num_images"          # images in the context so far (prompt images + figures)
VISUAL_TOKENS = "visual_tokens"    # estimated visual tokens of those images
EXEC = "exec"                      # the last turn's `ExecRecord.as_dict()` (status "none": no cell)
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


@dataclass(frozen=True)
class ExecRecord:
    """How the last turn's code cell ran; `NO_EXEC` for a turn that ran none.

    Attributes:
        status: a `CellStatus` value ("ok", "error", "timeout", "sandbox_failure"), or "none".
        duration: wall-clock seconds the cell ran.
        error: the exception's type name, or None.
        state_lost: the worker was restarted, so earlier variables are gone.
        num_figures: figures returned in the observation.
        figures_dropped: the cell showed more figures than `max_images` left room for.
    """

    status: str = "none"
    duration: float = 0.0
    error: str | None = None
    state_lost: bool = False
    num_figures: int = 0
    figures_dropped: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The plain dict `info["exec"]` holds: always the same keys, so vector envs batch it."""
        return asdict(self)


NO_EXEC = ExecRecord()
