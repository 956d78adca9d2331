"""On-demand frames versus uniform frames: accuracy and visual tokens on the built-in video suite.

Settings, all on the same episodes (same seeds, so the same clips and questions):
- `on-demand`: `PyVisionVideo-v0` with no frames up front; the `solver` agent samples frames by
  code through `video_clue_0` and shows a contact sheet of the frames that matter.
- `uniform-K` (K = 8, 32, 64): `initial_frames=K` uniformly spaced frames in the prompt and no
  tool use. The agent answers from what it sees: it runs the family's reference algorithm on a
  reader that only holds the K shown frames (any other frame reads as the nearest shown one).

Visual tokens use the env's estimate (Qwen2.5-VL rule, PyVision-RL's pixel budget).

    python benchmarks/video_tokens.py --episodes 20 --difficulty medium
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import statistics
from typing import Sequence

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import pyvision_env  # noqa: F401  (registers the env ids)
from pyvision_agents.base import EpisodeContext
from pyvision_agents.runner import run_episodes
from pyvision_agents.scripted import UNKNOWN, SolverAgent, answer_turn, redacted_task
from pyvision_env import info as keys
from pyvision_env.media.video import VideoReader
from pyvision_env.tasks.builtin import builtin_family

_FRAME_LABEL = re.compile(r"Frame (\d+) \(t=")
_LENGTH = re.compile(r"Video Length: (\d+); Sample FPS: ([\d.]+)")
_ANSWER = re.compile(r"ANSWER:\s*(.+)")


class _ShownFrames:
    """A video backend that holds only the frames shown in the prompt (nearest one for others)."""

    def __init__(self, indices: Sequence[int], frames: Sequence[np.ndarray], num_frames: int,
                 fps: float):
        self.indices = np.asarray(indices)
        self.frames = list(frames)
        self.num_frames, self.fps = num_frames, fps
        self.height, self.width = self.frames[0].shape[:2]

    def read(self, indices: Sequence[int]) -> np.ndarray:
        nearest = [int(np.abs(self.indices - i).argmin()) for i in indices]
        return np.stack([self.frames[j] for j in nearest])

    def timestamps(self) -> np.ndarray:
        start = np.arange(self.num_frames) / self.fps
        return np.stack([start, start + 1 / self.fps], axis=1)

    def close(self) -> None:
        pass


class UniformFramesAgent:
    """Answers at once from the frames in the prompt, with the family's own algorithm."""

    name = "uniform-frames"

    def act(self, contexts: Sequence[EpisodeContext]) -> list[str]:
        return [answer_turn(self._answer(context)) for context in contexts]

    def _answer(self, context: EpisodeContext) -> str:
        prompt = context.reset_info[keys.MESSAGES][0]["content"]
        text = "".join(p["text"] for p in prompt if p["type"] == "text")
        frames = [p["image"] for p in prompt if p["type"] == "image"]
        indices = [int(i) for i in _FRAME_LABEL.findall(text)]
        length = _LENGTH.search(text)
        if not frames or length is None:
            return UNKNOWN
        backend = _ShownFrames(indices, frames, int(length[1]), float(length[2]))
        task = redacted_task(context.reset_info)
        code = builtin_family(task.extra["family"]).solution_code(task)
        namespace = {"video_clue_0": VideoReader(backend), "np": np, "plt": plt, "Image": Image}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<uniform-agent>", "exec"), namespace)
        except Exception:
            return UNKNOWN
        finally:
            plt.close("all")
        found = _ANSWER.findall(out.getvalue())
        return found[-1].strip() if found else UNKNOWN


def run_setting(name, agent, episodes, difficulty, initial_frames):
    make_env = lambda: gym.make(  # noqa: E731
        "PyVisionVideo-v0", difficulty=difficulty, initial_frames=initial_frames, max_images=128)
    records = list(run_episodes(make_env, agent, [(i, 1000 + i) for i in range(episodes)],
                                env_id="PyVisionVideo-v0"))
    scores = [r.reward_parts["accuracy"] for r in records]
    tokens = [r.visual_tokens for r in records]
    errors = [r for r in records if r.end_reason == "ENV_ERROR"]
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} episodes failed: {errors[0].error}")
    return {
        "setting": name,
        "accuracy": statistics.mean(r.correct for r in records),
        "score": statistics.mean(scores),
        "median_tokens": statistics.median(tokens),
        "mean_tokens": statistics.mean(tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--difficulty", default="medium", choices=("easy", "medium", "hard"))
    parser.add_argument("--uniform", type=int, nargs="+", default=[8, 32, 64])
    args = parser.parse_args()
    rows = [run_setting("on-demand", SolverAgent(), args.episodes, args.difficulty, 0)]
    for k in args.uniform:
        rows.append(run_setting(f"uniform-{k}", UniformFramesAgent(), args.episodes,
                                args.difficulty, k))
    reference = next((r for r in rows if r["setting"] == "uniform-32"), rows[-1])
    print(f"{args.episodes} episodes per setting, difficulty {args.difficulty}\n")
    print(f"{'setting':<12} {'accuracy':>9} {'score':>7} {'median tokens':>14} "
          f"{'mean tokens':>12} {'tokens vs ' + reference['setting']:>22}")
    for row in rows:
        ratio = reference["median_tokens"] / row["median_tokens"]
        print(f"{row['setting']:<12} {row['accuracy']:>9.1%} {row['score']:>7.3f} "
              f"{row['median_tokens']:>14,.0f} {row['mean_tokens']:>12,.0f} {ratio:>21.1f}x")


if __name__ == "__main__":
    main()
