"""`BuiltinTasks`: seeded sampling of procedural tasks from the built-in families, and ids that regenerate them."""

from __future__ import annotations

import difflib
from typing import Sequence

import numpy as np

from pyvision_env.tasks import keys
from pyvision_env.tasks.families import FAMILIES, TaskFamily
from pyvision_env.tasks.task import Task
from pyvision_env.tasks.video_families import VIDEO_FAMILIES

# Every built-in family, image and video, by name.
ALL_FAMILIES: dict[str, type[TaskFamily]] = {**FAMILIES, **VIDEO_FAMILIES}


class BuiltinTasks:
    """A task source over some built-in families at one difficulty.

    A task's id is `"<family>/<task index as 16 hex digits>"`, the index drawn from the env's
    generator; the family's generator seed is a keyed hash of (family, index) under
    `seed_key` (see `pyvision_env.tasks.keys`), so an id tells nothing without the key, and
    `from_id` rebuilds the same task (same pixels, same answer) wherever the key is the same.

    Args:
        families: family names to draw from, image (`FAMILIES`) or video (`VIDEO_FAMILIES`)
            ones (default: all image families).
        difficulty: "easy", "medium" or "hard", passed to every family.
        seed_key: the key of the generator seeds (default: `keys.seed_key()`, read when
            the first task is made: `$PYVISION_ENV_SEED_KEY`, else the installation key).

    Example:
        >>> import numpy as np
        >>> tasks = BuiltinTasks(["count_marks"], difficulty="easy")
        >>> task = tasks.sample(np.random.default_rng(0))
        >>> tasks.from_id(task.id).answer == task.answer
        True
    """

    def __init__(
        self, families: Sequence[str] | None = None, difficulty: str = "medium", *, seed_key: bytes | None = None
    ) -> None:
        names = list(FAMILIES) if families is None else list(families)
        if not names:
            raise ValueError(f"families must name at least one of {sorted(ALL_FAMILIES)}")
        for name in names:
            check_family(name)
        self.difficulty = difficulty
        self._families = {name: ALL_FAMILIES[name](difficulty) for name in names}
        self._seed_key = seed_key

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

    @property
    def seed_key(self) -> bytes:
        """The key of the generator seeds (see the class docstring)."""
        if self._seed_key is None:
            self._seed_key = keys.seed_key()
        return self._seed_key

    def sample(self, rng: np.random.Generator) -> Task:
        """Pick a family uniformly, draw a task index, and generate that task."""
        name = self.names[int(rng.integers(len(self.names)))]
        index = int(rng.integers(2**63))
        return self._generate(name, index)

    def from_id(self, task_id: str) -> Task:
        """Regenerate the task whose id is `task_id` (as made by `sample`)."""
        name, sep, index_hex = task_id.partition("/")
        try:
            index = int(index_hex, 16)
        except ValueError:
            index = -1
        if not sep or index < 0:
            raise ValueError(f"task id must look like '<family>/<16 hex digits>', got {task_id!r}")
        return self._generate(name, index)

    def _generate(self, name: str, index: int) -> Task:
        family = self.family(name)
        seed = keys.keyed_seed(self.seed_key, "builtin-task", name, index)
        return family.generate(np.random.default_rng(seed), f"{name}/{index:016x}")


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
