"""`BuiltinTasks`: seeded sampling of procedural tasks from the built-in families, and ids that regenerate them."""

from __future__ import annotations

import difflib
from typing import Sequence

import numpy as np

from pyvision_env.tasks.families import FAMILIES, TaskFamily
from pyvision_env.tasks.task import Task
from pyvision_env.tasks.video_families import VIDEO_FAMILIES

# Every built-in family, image and video, by name.
ALL_FAMILIES: dict[str, type[TaskFamily]] = {**FAMILIES, **VIDEO_FAMILIES}


class BuiltinTasks:
    """A task source over some built-in families at one difficulty.

    A task's id is `"<family>/<sub-seed as 16 hex digits>"`; `from_id` rebuilds the same task
    (same pixels, same answer) from it.

    Args:
        families: family names to draw from, image (`FAMILIES`) or video (`VIDEO_FAMILIES`)
            ones (default: all image families).
        difficulty: "easy", "medium" or "hard", passed to every family.

    Example:
        >>> import numpy as np
        >>> tasks = BuiltinTasks(["count_marks"], difficulty="easy")
        >>> task = tasks.sample(np.random.default_rng(0))
        >>> tasks.from_id(task.id).answer == task.answer
        True
    """

    def __init__(self, families: Sequence[str] | None = None, difficulty: str = "medium") -> None:
        names = list(FAMILIES) if families is None else list(families)
        if not names:
            raise ValueError(f"families must name at least one of {sorted(ALL_FAMILIES)}")
        for name in names:
            check_family(name)
        self.difficulty = difficulty
        self._families = {name: ALL_FAMILIES[name](difficulty) for name in names}

    @property
    def names(self) -> tuple[str, ...]:
        """The family names this source draws from, in order."""
        return tuple(self._families)

    def family(self, name: str) -> TaskFamily:
        """The configured family called `name`."""
        check_family(name)
        if name not in self._families:
            raise ValueError(f"family {name!r} is not in this source; it has {list(self._families)}")
        return self._families[name]

    def sample(self, rng: np.random.Generator) -> Task:
        """Pick a family uniformly, draw a sub-seed, and generate that task."""
        name = self.names[int(rng.integers(len(self.names)))]
        subseed = int(rng.integers(2**63))
        return self._generate(name, subseed)

    def from_id(self, task_id: str) -> Task:
        """Regenerate the task whose id is `task_id` (as made by `sample`)."""
        name, sep, seed_hex = task_id.partition("/")
        try:
            subseed = int(seed_hex, 16)
        except ValueError:
            subseed = -1
        if not sep or subseed < 0:
            raise ValueError(f"task id must look like '<family>/<16 hex digits>', got {task_id!r}")
        return self._generate(name, subseed)

    def _generate(self, name: str, subseed: int) -> Task:
        return self.family(name).generate(np.random.default_rng(subseed), f"{name}/{subseed:016x}")


def check_family(name: str) -> None:
    """Raise a ValueError naming the closest known family if `name` is not one."""
    if name in ALL_FAMILIES:
        return
    close = difflib.get_close_matches(name, list(ALL_FAMILIES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown task family {name!r}.{hint} Known families: {sorted(ALL_FAMILIES)}")


def builtin_family(name: str) -> TaskFamily:
    """A default-configured instance of the built-in family `name` (image or video)."""
    check_family(name)
    return ALL_FAMILIES[name]()
