"""The env flow: registry-wide checks, seeding, episodes end to end, budgets and errors."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import pyvision_env
from pyvision_env import info as keys
from pyvision_env.registration import PRESETS
from pyvision_env.tasks.task import Task

IDS = [preset.id for preset in PRESETS]


def code(cell: str) -> str:
    return f"Let me look.\n<code>\n```python\n{cell}\n```\n</code>"


def answer(value: str) -> str:
    return f"<answer>\n\\boxed{{{value}}}\n</answer>"


def red_square_task(answer_text: str = "7") -> Task:
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    image[10:30, 20:50] = (255, 0, 0)
    return Task(id="red", question="How many pixels wide is the red box? ", answer=answer_text,
                answer_type="number", images=(Image.fromarray(image),), source="test")


@pytest.fixture
def env():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task("30")], cell_timeout=5)
    yield environment
    environment.close()


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_passes(env_id):
    environment = gym.make(env_id, max_turns=3, difficulty="easy")
    try:
        check_env(environment.unwrapped, skip_render_check=False)
    finally:
        environment.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_episode(env_id):
    first, second = gym.make(env_id, difficulty="easy"), gym.make(env_id, difficulty="easy")
    try:
        obs_a, info_a = first.reset(seed=7)
        obs_b, info_b = second.reset(seed=7)
        obs_c, info_c = first.reset(seed=8)
    finally:
        first.close()
        second.close()
    assert obs_a["text"] == obs_b["text"]
    assert info_a[keys.TASK_ID] == info_b[keys.TASK_ID] != info_c[keys.TASK_ID]
    assert len(obs_a["images"]) == len(obs_b["images"])
    for a, b in zip(obs_a["images"], obs_b["images"]):
        np.testing.assert_array_equal(a, b)


def test_unknown_id_suggests_the_closest():
    with pytest.raises(gym.error.NameNotFound, match="PyVisionImage"):
        gym.make("PyVisionImag-v0")


def test_prompt_shows_image_and_preloads_it(env):
    obs, info = env.reset(seed=0)
    assert len(obs["images"]) == 1 and obs["images"][0].shape == (120, 160, 3)
    assert obs["text"].count("<image>") == 1 and "<image_clue_0>" in obs["text"]
    assert info[keys.NUM_IMAGES] == 1 and info[keys.VISUAL_TOKENS] > 0
    assert info[keys.QUESTION].startswith("How many") and info[keys.END_REASON] is None
    obs, reward, terminated, truncated, info = env.step(code("print(image_clue_0.size)"))
    assert "(160, 120)" in obs["text"] and obs["text"].startswith("<interpreter>")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info[keys.EXEC]["status"] == "ok" and info[keys.NUM_CODE_CELLS] == 1


def test_correct_answer_after_code_pays_tool_reward(env):
    env.reset(seed=0)
    cell = "a = np.array(image_clue_0)\nplt.imshow(a[0:40, 10:60]); plt.show()\nprint('width', (a[..., 0] > 128).any(0).sum())"
    obs, *_ , info = env.step(code(cell))
    assert "width 30" in obs["text"]
    assert "<image_clue_1>" in obs["text"] and len(obs["images"]) == 1  # clue 0 is the input
    assert info[keys.NUM_IMAGES] == 2
    obs, reward, terminated, truncated, info = env.step(answer("30"))
    assert terminated and not truncated
    assert info[keys.END_REASON] == "DONE" and info[keys.CORRECT] and info[keys.ANSWER] == "30"
    assert info[keys.REWARD_PARTS] == pytest.approx({"accuracy": 1.0, "tool": 0.1, "total": 1.1})
    assert reward == pytest.approx(1.1)


def test_wrong_answer_gets_no_tool_reward(env):
    env.reset(seed=0)
    env.step(code("x = 1"))
    *_, reward, terminated, _, info = env.step(answer("31"))
    assert terminated and reward == 0.0 and not info[keys.CORRECT]
    assert info[keys.REWARD_PARTS]["tool"] == 0.0


def test_tool_reward_can_be_switched_off():
    from pyvision_env.rewards import RewardConfig

    environment = pyvision_env.PyVisionEnv(
        tasks=[red_square_task("30")], reward=RewardConfig(use_tool_reward=False))
    try:
        environment.reset(seed=0)
        environment.step(code("x = 1"))
        _, reward, *_ = environment.step(answer("30"))
    finally:
        environment.close()
    assert reward == 1.0


def test_step_after_the_end_needs_reset(env):
    env.reset(seed=0)
    env.step(answer("30"))
    with pytest.raises(gym.error.ResetNeeded):
        env.step(answer("30"))


def test_turn_without_code_or_answer_observe_then_terminate():
    observe = pyvision_env.PyVisionEnv(tasks=[red_square_task()])
    terminate = pyvision_env.PyVisionEnv(tasks=[red_square_task()], on_error="terminate")
    try:
        observe.reset(seed=0)
        obs, reward, terminated, truncated, info = observe.step("I think it is red.")
        assert "Error" in obs["text"] and "<code>" in obs["text"] and not (terminated or truncated)
        terminate.reset(seed=0)
        _, reward, terminated, truncated, info = terminate.step("I think it is red.")
        assert terminated and not truncated and reward == 0.0
        assert info[keys.END_REASON] == "ERROR_IN_ACTION"
    finally:
        observe.close()
        terminate.close()


def test_code_error_is_observed_and_state_survives(env):
    env.reset(seed=0)
    env.step(code("kept = 41"))
    obs, _, terminated, _, info = env.step(code("1 / 0"))
    assert "Execution error" in obs["text"] and "ZeroDivisionError" in obs["text"]
    assert not terminated and info[keys.EXEC]["error"] == "ZeroDivisionError"
    obs, *_ = env.step(code("print(kept + 1)"))
    assert "42" in obs["text"]


def test_code_error_terminates_when_asked():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], on_error="terminate")
    try:
        environment.reset(seed=0)
        _, reward, terminated, _, info = environment.step(code("raise ValueError('bad')"))
    finally:
        environment.close()
    assert terminated and reward == 0.0 and info[keys.END_REASON] == "ERROR_IN_ACTION"
    assert "ValueError" in info[keys.MESSAGES][-1]["content"][0]["text"]


def test_timeout_restarts_the_worker_and_says_state_was_lost():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], cell_timeout=1.0)
    try:
        environment.reset(seed=0)
        environment.step(code("kept = 1"))
        obs, _, terminated, _, info = environment.step(code("while True:\n    pass"))
        assert not terminated and info[keys.EXEC]["status"] == "timeout"
        assert "lost" in obs["text"]
        obs, *_ = environment.step(code("print('kept' in globals(), image_clue_0.size)"))
        assert "False (160, 120)" in obs["text"]
    finally:
        environment.close()


def test_max_turns_truncates():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], max_turns=2)
    try:
        environment.reset(seed=0)
        assert environment.step(code("x = 1"))[3] is False
        _, reward, terminated, truncated, info = environment.step(code("x = 2"))
    finally:
        environment.close()
    assert truncated and not terminated and reward == 0.0
    assert info[keys.END_REASON] == "EXCEED_MAX_TURNS"


def test_max_images_truncates_and_keeps_the_figures_that_fit():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], max_images=3)
    cell = "for i in range(4):\n    plt.figure(figsize=(1, 1)); plt.plot([0, i]); plt.show()"
    try:
        environment.reset(seed=0)
        obs, _, terminated, truncated, info = environment.step(code(cell))
    finally:
        environment.close()
    assert truncated and info[keys.END_REASON] == "EXCEED_MAX_IMAGES"
    assert len(obs["images"]) == 2 and info[keys.NUM_IMAGES] == 3


def test_no_hint_prompt_gives_only_the_size():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], image_in_prompt=False)
    try:
        obs, info = environment.reset(seed=0)
        assert obs["images"] == () and "<image>" not in obs["text"]
        assert "160" in obs["text"] and "120" in obs["text"]
        assert info[keys.VISUAL_TOKENS] == 0
        obs, *_ = environment.step(code("print(image_clue_0.size)"))
        assert "(160, 120)" in obs["text"]
    finally:
        environment.close()


def test_inline_form_appends_to_the_assistant_message():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], chat_form="inline")
    try:
        environment.reset(seed=0)
        environment.step(code("print('hi')"))
        *_, info = environment.step(code("print('again')"))
    finally:
        environment.close()
    roles = [m["role"] for m in info[keys.MESSAGES]]
    assert roles == ["user", "assistant"]
    text = "".join(p["text"] for p in info[keys.MESSAGES][1]["content"] if p["type"] == "text")
    assert text.index("hi") < text.index("again")


def test_render_ansi_shows_the_transcript():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], render_mode="ansi")
    try:
        environment.reset(seed=0)
        environment.step(code("print('visible')"))
        transcript = environment.render()
    finally:
        environment.close()
    assert "[user]" in transcript and "[observation]" in transcript and "visible" in transcript


def test_pyvision_data_file_episode_scores(tmp_path):
    Image.fromarray(np.full((64, 96, 3), 200, dtype=np.uint8)).save(tmp_path / "gray.png")
    rows = [
        {"id": "q1", "question": "What is the image width in pixels?", "answer": "96",
         "ability": "size", "data_source": "toy", "image_path": "gray.png"},
        {"id": "q2", "question": "Is the image bright?\n(A) yes\n(B) no", "answer": "A",
         "ability": "color", "data_source": "toy", "image_path": "gray.png"},
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    environment = gym.make("PyVisionImage-v0", data_path=str(path))
    try:
        obs, info = environment.reset(options={"task_id": "q1"})
        assert "image width" in obs["text"]
        obs, *_ = environment.step(code("print(image_clue_0.width)"))
        _, reward, terminated, _, info = environment.step(answer("96"))
        assert terminated and info[keys.CORRECT] and reward == pytest.approx(1.1)
        environment.reset(options={"task_id": "q2"})
        environment.step(code("print(np.array(image_clue_0).mean() > 128)"))
        _, reward, *_, info = environment.step(answer("A"))
        assert info[keys.CORRECT] and reward == pytest.approx(1.1)
    finally:
        environment.close()


def test_bad_arguments_say_what_to_fix():
    with pytest.raises(ValueError, match="on_error"):
        pyvision_env.PyVisionEnv(on_error="explode")
    with pytest.raises(ValueError, match="max_turns"):
        pyvision_env.PyVisionEnv(max_turns=0)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_batches_episodes_that_end_at_different_times(mode):
    kwargs = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}
    envs = gym.make_vec("PyVisionImage-v0", num_envs=2, vectorization_mode=mode,
                        difficulty="easy", **kwargs)
    try:
        obs, info = envs.reset(seed=0)
        assert len(obs["text"]) == 2 and all(len(images) == 1 for images in obs["images"])
        obs, reward, terminated, truncated, info = envs.step([answer("1"), code("print(6 * 7)")])
        assert list(terminated) == [True, False] and "42" in obs["text"][1]
        assert list(info[keys.EXEC]["status"]) == ["none", "ok"]
        assert list(info[keys.END_REASON]) == ["DONE", None]
    finally:
        envs.close()


class _FailingSandbox:
    """A sandbox whose infrastructure fails on every cell."""

    def __init__(self, config):
        self.config = config

    def start(self, images=(), videos=()):
        pass

    def run(self, code, timeout=None):
        from pyvision_env.sandbox import CellError, CellResult, CellStatus

        return CellResult(CellStatus.SANDBOX_FAILURE, error=CellError("WorkerLost", "gone"))

    def close(self):
        pass


def test_sandbox_failure_truncates_without_blaming_the_policy():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], sandbox=_FailingSandbox,
                                           on_error="terminate")
    try:
        environment.reset(seed=0)
        _, reward, terminated, truncated, info = environment.step(code("x = 1"))
    finally:
        environment.close()
    assert truncated and not terminated and reward == 0.0
    assert info[keys.END_REASON] == "SANDBOX_FAILURE" and info[keys.NUM_CODE_CELLS] == 0


def test_context_budget_truncates_with_over_length():
    probe = pyvision_env.PyVisionEnv(tasks=[red_square_task()])
    prompt_chars = len(probe.reset(seed=0)[0]["text"])
    probe.close()
    budget = (prompt_chars + 2500) // 3.5  # room for the prompt and one 1500-character output
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], max_context_tokens=budget)
    try:
        environment.reset(seed=0)
        _, _, _, truncated, info = environment.step(code("print('x' * 1500)"))
        assert not truncated
        _, _, _, truncated, info = environment.step(code("print('y' * 1500)"))
    finally:
        environment.close()
    assert truncated and info[keys.END_REASON] == "OVER_LENGTH"


def test_wall_clock_budget_truncates():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()], max_episode_seconds=0.2)
    try:
        environment.reset(seed=0)
        _, _, _, truncated, info = environment.step(code("import time; time.sleep(0.3)"))
    finally:
        environment.close()
    assert truncated and info[keys.END_REASON] == "EXCEED_TIME_BUDGET"


def test_answer_without_boxed_value_ends_the_episode_unscored(env):
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("<answer>30</answer>")
    assert terminated and reward == 0.0 and info[keys.ANSWER] is None
    assert info[keys.END_REASON] == "DONE" and not info[keys.CORRECT]


def _structure(messages):
    """Roles, texts and image identities of `info["messages"]`."""
    return [(m["role"], [p.get("text", id(p.get("image"))) for p in m["content"]])
            for m in messages]


@pytest.mark.parametrize("chat_form", ["observation", "inline"])
def test_info_messages_are_snapshots_later_steps_never_change(chat_form):
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task("30")], chat_form=chat_form)
    try:
        _, reset_info = environment.reset(seed=0)
        *_, first_info = environment.step(code("print('first')"))
        seen = [(info, _structure(info[keys.MESSAGES])) for info in (reset_info, first_info)]
        environment.step(code("print('second')"))
        environment.step("no code here")
        *_, last_info = environment.step(answer("30"))
    finally:
        environment.close()
    for info, structure in seen:
        assert _structure(info[keys.MESSAGES]) == structure
    sizes = [sum(len(m["content"]) for m in info[keys.MESSAGES])
             for info in (reset_info, first_info, last_info)]
    assert sizes == sorted(set(sizes))  # the chat did grow
    last_info[keys.MESSAGES][1]["content"].clear()  # a consumer editing one info ...
    assert _structure(first_info[keys.MESSAGES]) == seen[1][1]  # ... leaves the others alone


def test_step_before_reset_and_after_close_raise_gymnasium_errors():
    environment = pyvision_env.PyVisionEnv(tasks=[red_square_task()])
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        environment.step(answer("1"))
    environment.reset(seed=0)
    environment.close()
    with pytest.raises(gym.error.ClosedEnvironmentError, match="closed"):
        environment.step(code("x = 1"))
    environment.reset(seed=0)  # a closed env may start again
    *_, info = environment.step(code("print(1 + 1)"))
    environment.close()
    assert info[keys.EXEC]["status"] == "ok"


def test_exec_info_has_the_same_keys_every_turn(env):
    from dataclasses import fields

    from pyvision_env.info import ExecRecord

    expected = {field.name for field in fields(ExecRecord)}
    _, info = env.reset(seed=0)
    records = [info[keys.EXEC]]
    for action in (code("print(1)"), "no code", code("1 / 0"), answer("30")):
        records.append(env.step(action)[-1][keys.EXEC])
    assert all(set(record) == expected for record in records)
    assert [record["status"] for record in records] == ["none", "ok", "none", "error", "none"]
    assert records[3]["error"] == "ZeroDivisionError"


def test_reset_info_is_an_answer_free_task_view_and_the_end_gives_the_answer(env):
    from pyvision_env.tasks.task import TaskView

    task = red_square_task("30")
    _, info = env.reset(options={"task": task})
    view = TaskView.from_info(info)
    assert view == TaskView.of(task) and not hasattr(view, "answer")
    assert info[keys.GROUND_TRUTH] is None
    *_, info = env.step(code("print(1)"))
    assert info[keys.GROUND_TRUTH] is None
    *_, info = env.step(answer("29"))
    assert info[keys.GROUND_TRUTH] == "30"
