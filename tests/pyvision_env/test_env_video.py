"""The video env: on-demand frames, decord-style code, uniform frames, data rows, broken files."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest

import pyvision_env  # noqa: F401
from pyvision_env import info as keys
from pyvision_env.media.encode import write_video
from pyvision_env.media.tokens import PYVISION_RL_RULE, count_visual_tokens
from pyvision_env.media.video import VideoError


def code(cell: str) -> str:
    return f"<code>\n```python\n{cell}\n```\n</code>"


def answer(value: str) -> str:
    return f"<answer>\n\\boxed{{{value}}}\n</answer>"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A good 40-frame clip whose frame i has red level 5*i, a truncated copy, and a data file."""
    folder = tmp_path_factory.mktemp("clips")
    frames = [np.full((96, 128, 3), (5 * i, 0, 0), dtype=np.uint8) for i in range(40)]
    write_video(folder / "ramp.mp4", frames, fps=10)
    data = (folder / "ramp.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    rows = [
        {"id": "good", "question": "How many frames does the video have?", "answer": "40",
         "ability": "count", "data_source": "toy", "video_path": "ramp.mp4"},
        {"id": "cut", "question": "How many frames?", "answer": "40", "ability": "count",
         "data_source": "toy", "video_path": "cut.mp4"},
        {"prompt": [{"role": "user", "content": "What is the fps?"}],
         "reward_model": {"ground_truth": "10", "style": "model"},
         "extra_info": {"index": "processed", "question": "What is the fps?"},
         "mm_hint": {"hint_path": "ramp.mp4", "hint_type": "video"}},
    ]
    (folder / "data.json").write_text(json.dumps(rows))
    return folder


@pytest.fixture
def env(clips):
    environment = gym.make("PyVisionVideo-v0", data_path=str(clips / "data.json"))
    yield environment
    environment.close()


def test_first_observation_has_metadata_and_no_frames(env):
    obs, info = env.reset(options={"task_id": "good"})
    assert obs["images"] == () and info[keys.VISUAL_TOKENS] == 0
    text = obs["text"]
    for fact in ("Frame Width: 128", "Frame Height: 96", "Video Length: 40", "10.00",
                 "Duration: 4.00", "video_clue_0"):
        assert fact in text


def test_decord_code_runs_unchanged_and_figures_come_back(env):
    env.reset(options={"task_id": "good"})
    obs, *_ = env.step(code(
        "vr = video_clue_0\n"
        "batch = vr.get_batch([0, 30]).asnumpy()\n"
        "print(len(vr), vr.get_avg_fps(), batch.shape, batch[1, 0, 0, 0] // 5)\n"
        "plt.imshow(vr[-1].asnumpy()); plt.show()"
    ))
    assert "40 10.0 (2, 96, 128, 3) 30" in obs["text"].replace("np.uint8(30)", "30")
    assert "<image_clue_0>" in obs["text"] and len(obs["images"]) == 1  # video: clues start at 0
    obs, *_ = env.step(code("vr[40]"))
    assert "IndexError" in obs["text"]
    _, reward, terminated, _, info = env.step(answer("40"))
    assert terminated and info[keys.CORRECT] and reward == pytest.approx(1.2)


def test_uniform_initial_frames_are_shown_and_counted(clips):
    environment = gym.make("PyVisionVideo-v0", data_path=str(clips / "data.json"),
                           initial_frames=4)
    try:
        obs, info = environment.reset(options={"task_id": "good"})
    finally:
        environment.close()
    assert len(obs["images"]) == 4 and "Frame 5 (t=0.50s)" in obs["text"]
    reds = [int(image[..., 0].mean()) for image in obs["images"]]
    assert reds == sorted(reds) and reds[0] < reds[-1]
    assert info[keys.VISUAL_TOKENS] == 4 * count_visual_tokens(96, 128, PYVISION_RL_RULE)


def test_processed_video_row_scores(env):
    env.reset(options={"task_id": "processed"})
    env.step(code("print(video_clue_0.get_avg_fps())"))
    *_, info = env.step(answer("10"))
    assert info[keys.CORRECT]


def test_broken_video_is_a_clear_error_and_the_env_stays_usable(env, clips):
    with pytest.raises(VideoError, match="cut.mp4"):
        env.reset(options={"task_id": "cut"})
    obs, _ = env.reset(options={"task_id": "good"})
    assert "Video Length: 40" in obs["text"]


def test_broken_video_is_skipped_when_not_strict(clips, tmp_path):
    rows = json.loads((clips / "data.json").read_text())[:2]
    for name in ("ramp.mp4", "cut.mp4"):
        shutil.copy(clips / name, tmp_path / name)
    (tmp_path / "data.json").write_text(json.dumps(rows))
    environment = gym.make("PyVisionVideo-v0", data_path=str(tmp_path / "data.json"), strict=False)
    try:
        with pytest.warns(UserWarning, match="cut.mp4"):
            ids = {environment.reset(seed=seed)[1][keys.TASK_ID] for seed in range(8)}
    finally:
        environment.close()
    assert ids == {"good"}


def test_solver_solves_builtin_video_tasks():
    from pyvision_agents.runner import run_episodes
    from pyvision_agents.scripted import SolverAgent

    make_env = lambda: gym.make("PyVisionVideo-v0", difficulty="easy")  # noqa: E731
    records = list(run_episodes(make_env, SolverAgent(), [(i, i) for i in range(5)]))
    assert all(r.correct and r.code_cells == 1 and r.images_shown >= 1 for r in records)
    assert len({r.task_id.split("/")[0] for r in records}) >= 2
