"""Attacks on built-in task generation through `env.step`: a cell must not regenerate its task.

A cell knows the public generator code (if it can import it), the reset seed (small ones are
easy to guess) and how the env samples. What it must not get is the key that turns a task
index into a generator seed (`pyvision_env.tasks.keys`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import pyvision_env  # noqa: F401  (registers the ids)
from pyvision_env.tasks import keys

SEED = 3

# As non-root, the local backend runs a worker as the user's own uid; an owner-only key file
# is then readable unless the sandbox's filesystem view leaves it out (issue 10, item 1).
SHARED_UID = pytest.mark.xfail(
    os.geteuid() != 0,
    reason="as non-root the worker shares the user's uid: hiding the key needs the sandbox's filesystem view",
    strict=False,
)


@pytest.fixture
def episode():
    env = gym.make("PyVisionImage-CountMarks-v0", difficulty="easy")
    env.reset(seed=SEED)
    yield env
    env.close()


def run_cell(env, code: str) -> str:
    action = f"<code>\n```python\n{textwrap.dedent(code).strip()}\n```\n</code>"
    observation, *_ = env.step(action)
    return observation["text"]


@SHARED_UID
def test_a_cell_cannot_read_the_installation_key(episode):
    keys.installation_key()  # made by now: the env generated the task with it
    text = run_cell(episode, f"""
        try:
            print("KEY", len(open({str(keys.key_file())!r}, "rb").read()))
        except Exception as exc:
            print("NO KEY", type(exc).__name__)
    """)
    assert "NO KEY" in text and "KEY 32" not in text, text


@SHARED_UID
def test_a_cell_cannot_regenerate_its_task_from_the_reset_seed(episode):
    """The cell replays the env's sampling with the project's own code and compares pixels."""
    text = run_cell(episode, f"""
        import numpy as np
        try:
            from gymnasium.utils import seeding
            from pyvision_env.tasks.builtin import BuiltinTasks
            rng, _ = seeding.np_random({SEED})
            guess = BuiltinTasks(["count_marks"], difficulty="easy").sample(rng)
            same = np.array_equal(np.asarray(guess.images[0]), np.asarray(image_clue_0))
            print("REGENERATED" if same else "DIFFERENT TASK")
        except Exception as exc:
            print("CANNOT", type(exc).__name__, exc)
    """)
    assert "REGENERATED" not in text, text
    assert "DIFFERENT TASK" in text or "CANNOT" in text, text


ENVIRON_PROBE = r'''
import gymnasium as gym, pyvision_env
env = gym.make("PyVisionImage-CountMarks-v0", difficulty="easy")
env.reset(seed=1)
cell = "import os\nseen = [open('/proc/self/environ', 'rb').read(), repr(dict(os.environ)).encode()]\n" \
       "print('LEAKED' if any(b'shared-seed-key-4f1c' in s for s in seen) else 'CLEAN')"
observation, *_ = env.step(f"<code>\n```python\n{cell}\n```\n</code>")
print(observation["text"])
env.close()
'''


def test_a_shared_seed_key_does_not_reach_the_cell(tmp_path):
    """A fresh process (so a fresh fork server) with `$PYVISION_ENV_SEED_KEY` set: the cell's environment lacks it."""
    environment = {**os.environ, keys.SEED_KEY_ENV: "shared-seed-key-4f1c"}
    done = subprocess.run([sys.executable, "-c", ENVIRON_PROBE], env=environment, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CLEAN" in done.stdout and "LEAKED" not in done.stdout, done.stdout
