"""An agent over any OpenAI-compatible chat endpoint (`vllm serve`, SGLang, hosted APIs)."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pyvision_agents.base import AgentFailure
from pyvision_agents.chat import (
    PYTHON_TOOL,
    ModelReply,
    continues_final,
    data_url,
    openai_messages,
    stop_strings,
)
from pyvision_agents.model import GenerationConfig, ModelAgent, require

OPENAI_EXTRA = "pip install 'pyvision-env[openai]'"


class OpenAIAgent(ModelAgent):
    """Plays episodes through `chat.completions` on an OpenAI-compatible server.

    Images go as PNG data URLs (each encoded once while recent: prompt images recur every turn).
    Each episode's request runs in its own thread (at most `max_concurrency` at once). The openai
    client retries a request that fails with a connection error, a timeout, 408, 409, 429 or a
    5xx up to `max_retries` times, with exponential backoff and jitter, waiting as long as the
    server's `Retry-After` says when it sends one. When an episode's request still fails (or
    fails with another error, e.g. 400 for a prompt that is too long), that episode gets an
    `AgentFailure` and the others go on.

    Args:
        model: the model name the server knows.
        base_url: the server's `/v1` URL; default `$OPENAI_BASE_URL`, else OpenAI's.
        api_key: default `$OPENAI_API_KEY`, else "EMPTY" (local servers ignore it).
        protocol: "tags" (PyVision tags; stop at `</code>`) or "tools" (a native `python` tool).
        generation: sampling settings.
        name: the agent's name in results (default `openai:<model>`).
        max_concurrency: requests in flight at once.
        timeout: seconds per request attempt (transport timeout).
        max_retries: retries after the first attempt (the openai client's own).
        observation_role: the role the env's observations are sent with ("user" for hosted APIs
            that accept only the standard roles).
        extra_body: extra JSON fields for every request (server-specific sampling options).
    """

    IMAGE_CACHE_SIZE = 256  # data URLs kept per agent
    requires = {"openai": OPENAI_EXTRA}

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        protocol: str = "tags",
        generation: GenerationConfig | None = None,
        name: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 3,
        observation_role: str = "observation",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name or f"openai:{model}", protocol, generation)
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0, timeout > 0")
        self._openai = require("openai", OPENAI_EXTRA)
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.observation_role = observation_role
        self.extra_body = dict(extra_body or {})
        self._image_urls = ImageURLCache(self.IMAGE_CACHE_SIZE)
        self._client = self._openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=max_retries,
        )

    def _generate(self, conversations):
        workers = min(self.max_concurrency, len(conversations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-agent") as pool:
            return list(pool.map(self._complete, conversations))

    def _complete(self, conversation: list[dict[str, Any]]) -> ModelReply | AgentFailure:
        request = self._request(conversation)
        try:
            response = self._client.chat.completions.create(**request)
        except self._openai.OpenAIError as error:
            return AgentFailure(
                f"OpenAI-compatible endpoint {self.base_url or 'api.openai.com'} failed "
                f"(up to {self.max_retries} retries): {type(error).__name__}: {error}"
            )
        return _reply(response)

    def _request(self, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        gen = self.generation
        request: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(conversation, self.observation_role, self._image_urls.get),
            "max_tokens": gen.max_new_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
        }
        if gen.seed is not None:
            request["seed"] = gen.seed
        if stop_strings(self.protocol):
            request["stop"] = stop_strings(self.protocol)
        if self.protocol == "tools":
            request["tools"] = [PYTHON_TOOL]
        extra = dict(self.extra_body)
        if continues_final(conversation):  # the env's inline chat form (vLLM / SGLang servers)
            extra.update(continue_final_message=True, add_generation_prompt=False)
        if extra:
            request["extra_body"] = extra
        return request


class ImageURLCache:
    """Data URLs of the most recently sent images, safe to share between request threads.

    Keyed by the array's identity (the env hands the same array every turn); each entry holds
    its array, so an id is not reused while its entry lives. Encoding runs outside the lock.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._urls: OrderedDict[int, tuple[np.ndarray, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, image: np.ndarray) -> str:
        """The image's data URL, encoded now unless recently seen."""
        key = id(image)
        with self._lock:
            hit = self._urls.get(key)
            if hit is not None and hit[0] is image:
                self._urls.move_to_end(key)
                return hit[1]
        url = data_url(image)
        with self._lock:
            self._urls[key] = (image, url)
            self._urls.move_to_end(key)
            while len(self._urls) > self.capacity:
                self._urls.popitem(last=False)
        return url


def _reply(response: Any) -> ModelReply:
    message = response.choices[0].message
    code = None
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is not None and function.name == "python":
            code = _code_argument(function.arguments)
    return ModelReply(message.content or "", code)


def _code_argument(arguments: str) -> str | None:
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    return value.get("code") if isinstance(value, dict) else None
