"""Tasks: the `Task` record, dataset loaders and checks, built-in procedural task families and their keys."""

from pyvision_env.tasks.sources import DatasetTasks, TaskSource
from pyvision_env.tasks.task import ANSWER_TYPES, AnswerType, Task

__all__ = ["ANSWER_TYPES", "AnswerType", "DatasetTasks", "Task", "TaskSource"]
