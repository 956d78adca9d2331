"""Task sources: where an env draws its next task from (a dataset file or built-in families)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from pyvision_env.tasks.task import Task


class TaskSource(Protocol):
    """Anything that can draw a task with the env's seeded generator and find one by id."""

    def sample(self, rng: np.random.Generator) -> Task: ...

    def from_id(self, task_id: str) -> Task: ...


class DatasetTasks:
    """A fixed list of tasks, e.g. loaded from a PyVision data file."""

    def __init__(self, tasks: Sequence[Task], name: str = "dataset"):
        if not tasks:
            raise ValueError(f"{name}: no tasks to draw from (the file held no usable row)")
        self.tasks = list(tasks)
        self.name = name
        self._by_id = {task.id: task for task in self.tasks}
        if len(self._by_id) != len(self.tasks):
            counts = Counter(task.id for task in self.tasks)
            repeated = sorted(task_id for task_id, n in counts.items() if n > 1)
            raise ValueError(f"{name}: task ids must be unique; repeated: {repeated[:5]}")

    @classmethod
    def from_file(cls, path: str | Path, *, strict: bool = True) -> "DatasetTasks":
        from pyvision_env.tasks.loaders import load_tasks

        return cls(load_tasks(path, strict=strict), name=str(path))

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    def sample(self, rng: np.random.Generator) -> Task:
        return self.tasks[int(rng.integers(len(self.tasks)))]

    def from_id(self, task_id: str) -> Task:
        try:
            return self._by_id[task_id]
        except KeyError:
            raise KeyError(f"{self.name}: no task with id {task_id!r}") from None
