"""Scripted baselines: `solver` solves built-in tasks with real sandbox code; `no-tool` guesses."""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from typing import Sequence

import numpy as np

from pyvision_agents.base import EpisodeContext
from pyvision_env import info as keys
from pyvision_env.answers import random_choice_letter
from pyvision_env.tasks.task import TaskView

_ANSWER_LINE = re.compile(r"ANSWER:\s*(.+)")
UNKNOWN = "unknown"


def code_turn(code: str) -> str:
    """Wrap a code cell in the PyVision action format."""
    return f"<code>\n```python\n{code.rstrip()}\n```\n</code>"


def answer_turn(answer: str) -> str:
    """Wrap a final answer in the PyVision action format."""
    return f"<answer>\n\\boxed{{{answer}}}\n</answer>"


@lru_cache(maxsize=None)
def _family(name: str):
    from pyvision_env.tasks.builtin import builtin_family

    return builtin_family(name)


def redacted_task(reset_info: dict) -> TaskView:
    """The task as the agent may know it: everything the env reports at reset, never the answer."""
    return TaskView.from_info(reset_info)


class SolverAgent:
    """Runs the built-in family's reference solution as a code cell, then boxes what it printed.

    Proof that every built-in family is solvable with tools: the answer comes only from what the
    code computed on the pixels (`ANSWER: ...` on stdout), never from the task record. On tasks
    that are not from a built-in family it answers "unknown".
    """

    name = "solver"

    def act(self, contexts: Sequence[EpisodeContext]) -> list[str]:
        return [self._turn(context) for context in contexts]

    def _turn(self, context: EpisodeContext) -> str:
        family = context.reset_info[keys.TASK_EXTRA].get("family")
        if context.info[keys.TURN] == 0 and family is not None:
            task = redacted_task(context.reset_info)
            return code_turn(_family(family).solution_code(task))
        found = _ANSWER_LINE.findall(context.observation["text"])
        return answer_turn(found[-1].strip() if found else UNKNOWN)


class NoToolAgent:
    """Answers at once from the prompt alone: the chance-level bar that tool use must beat."""

    name = "no-tool"

    def act(self, contexts: Sequence[EpisodeContext]) -> list[str]:
        return [answer_turn(self._guess(context.reset_info)) for context in contexts]

    @staticmethod
    def _guess(reset_info: dict) -> str:
        task = redacted_task(reset_info)
        rng = np.random.default_rng(zlib.crc32(task.id.encode()))
        family = task.extra.get("family")
        if family is not None:
            return _family(family).chance_answer(task, rng)
        if task.choices:
            return random_choice_letter(rng, len(task.choices))
        return "0"
