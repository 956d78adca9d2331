"""The scripted agents see the task only through the env's answer-free reset info."""

from __future__ import annotations

import gymnasium as gym

import pyvision_env  # noqa: F401
from pyvision_agents.scripted import redacted_task
from pyvision_env import info as keys
from pyvision_env.tasks.builtin import BuiltinTasks
from pyvision_env.tasks.task import TaskView


def test_redacted_task_is_the_reset_infos_task_view_without_the_answer():
    task = BuiltinTasks(["count_marks"], difficulty="easy").from_id("count_marks/00000000000000ab")
    env = gym.make("PyVisionImage-CountMarks-v0", difficulty="easy")
    try:
        _, info = env.reset(options={"task": task})
    finally:
        env.close()
    view = redacted_task(info)
    assert isinstance(view, TaskView) and view == TaskView.of(task)
    assert not hasattr(view, "answer") and info[keys.GROUND_TRUTH] is None
    view.extra["family"] = "changed"  # the agent's copy, not the info's
    assert info[keys.TASK_EXTRA]["family"] == "count_marks"
