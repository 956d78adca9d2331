"""TRL `environment_factory` over a pyvision-env env: native `python` and `answer` tools.

    from functools import partial
    from pyvision_agents.integrations.trl import PyVisionToolEnv, dataset_rows, tool_chat_template

    processor.chat_template = tool_chat_template()       # renders tool calls and tool images
    trainer = GRPOTrainer(model, reward_funcs=[], args=config, processing_class=processor,
                          train_dataset=Dataset.from_list(dataset_rows("PyVisionImage-v0", seeds)),
                          environment_factory=partial(PyVisionToolEnv, "PyVisionImage-v0"))

TRL exposes every public method of the env class as a tool: `python(code)` runs a cell and
returns its printed text and its figures (text and image blocks, which reach generation and the
training forward pass); `answer(answer)` submits the final answer and ends the episode.
`get_reward()` is the env's reward (0 until answered). TRL cannot end an episode from the env:
after `answer` the tools say the episode is over; `max_tool_calling_iterations` bounds the turns.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from pyvision_agents.integrations.messages import MessageEnv, images_of
from pyvision_agents.scripted import answer_turn, code_turn
from pyvision_env import info as keys

CHAT_TEMPLATE = "qwen3_vl.jinja"  # TRL's; it renders tool calls and works with the Qwen2.5-VL processor
OVER = "The episode is over; no more tool calls are needed."


@lru_cache(maxsize=None)
def tool_chat_template(name: str = CHAT_TEMPLATE) -> str:
    """A chat template shipped with TRL that renders tool calls and tool results with images."""
    from importlib.resources import files

    try:
        return (files("trl") / "chat_templates" / name).read_text()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise ImportError(f"the tool chat template {name} comes with trl: pip install 'trl>=1.16' ({error})") from None


def dataset_rows(env_id: str, seeds: Sequence[int], **env_kwargs: Any) -> list[dict[str, Any]]:
    """One TRL row per seed: `prompt` (the task as a user message), `images` (PIL), and `env_id`,
    `seed` and `task_id`, which `PyVisionToolEnv.reset` receives to replay that task."""
    env = MessageEnv(env_id, **env_kwargs)
    try:
        rows = []
        for seed in seeds:
            (first,) = env.reset(seed=seed)
            text = "".join(part["text"] for part in first["content"] if part["type"] == "text")
            rows.append({"prompt": [{"role": "user", "content": text}], "images": images_of([first]),
                         "env_id": env_id, "seed": seed, "task_id": env.reset_info[keys.TASK_ID]})
        return rows
    finally:
        env.close()


class PyVisionToolEnv:
    """One rollout's env for TRL's tool loop (`environment_factory`); TRL pools and resets it."""

    def __init__(self, env_id: str = "PyVisionImage-v0", **env_kwargs: Any) -> None:
        self._env = MessageEnv(env_id, **env_kwargs)
        self._env_id = env_id
        self._reward = 0.0
        self._done = True

    def reset(self, **row: Any) -> None:
        """Start the episode of a `dataset_rows` row (its prompt is already in the row)."""
        if row.get("env_id", self._env_id) != self._env_id:
            raise ValueError(f"row for env {row['env_id']!r} given to a {self._env_id!r} env")
        self._env.reset(seed=int(row["seed"]))
        task_id = self._env.reset_info[keys.TASK_ID]
        if row.get("task_id") not in (None, task_id):
            raise ValueError(f"the row's task {row['task_id']!r} is not the env's task {task_id!r}: "
                             "make the rows with the same env id and env kwargs")
        self._reward, self._done = 0.0, False
        return None

    def python(self, code: str) -> list[dict[str, Any]]:
        """Run Python code in the persistent notebook holding the task's media (image_clue_0, ...
        as PIL images; video_clue_0, ... as video readers). Print what you want to read; call
        plt.show() to see a figure.

        Args:
            code: the Python code to run.

        Returns:
            What the code printed, and the figures it showed.
        """
        if self._done:
            return [{"type": "text", "text": OVER}]
        new, _, done, _ = self._env.step(code_turn(code))
        self._done = done
        return [_tool_part(part) for message in new for part in message["content"]] or [
            {"type": "text", "text": OVER}]

    def answer(self, answer: str) -> str:
        """Submit the final answer; this ends the episode. For a multiple-choice question give
        only the option letter.

        Args:
            answer: the final answer.

        Returns:
            A confirmation.
        """
        if self._done:
            return OVER
        _, reward, self._done, _ = self._env.step(answer_turn(answer))
        self._reward = reward
        return "Answer recorded."

    def get_reward(self) -> float:
        """The env's reward for the episode (accuracy plus tool reward); 0 until answered."""
        return self._reward


def _tool_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "image":
        return {"type": "image", "image": part["image"]}
    return {"type": "text", "text": part["text"]}
