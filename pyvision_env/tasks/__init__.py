"""Tasks: the `Task` record, dataset loaders, and built-in procedural task families."""

from pyvision_env.tasks.sources import DatasetTasks, TaskSource
from pyvision_env.tasks.task import ANSWER_TYPES, AnswerType, Task

__all__ = ["ANSWER_TYPES", "AnswerType", "DatasetTasks", "Task", "TaskSource"]
