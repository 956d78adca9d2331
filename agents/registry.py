"""Agents by name or spec, for the CLI and the benchmark harness."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from typing import Any, Callable, Mapping

from pyvision_agents.base import Agent
from pyvision_agents.model import GenerationConfig
from pyvision_agents.scripted import NoToolAgent, SolverAgent

# Scripted baselines, by name.
AGENTS: dict[str, Callable[[], Agent]] = {
    SolverAgent.name: SolverAgent,
    NoToolAgent.name: NoToolAgent,
}

# Model backends, by spec prefix: `<backend>:<model name or local path>`.
BACKENDS: dict[str, str] = {
    "openai": "pyvision_agents.openai_agent:OpenAIAgent",
    "transformers": "pyvision_agents.transformers_agent:TransformersAgent",
    "vllm": "pyvision_agents.vllm_agent:VLLMAgent",
}

_GENERATION_FIELDS = {f.name for f in dataclasses.fields(GenerationConfig)}


def agent_name(spec: str, options: Mapping[str, Any] | None = None) -> str:
    """The name an agent built from `spec` will have in results, without building it.

    >>> agent_name("openai:qwen", {"name": "qwen-7b"})
    'qwen-7b'
    """
    _check_spec(spec)
    if spec in AGENTS:
        return spec
    return str((options or {}).get("name", spec))


def _check_spec(spec: str) -> None:
    if spec in AGENTS:
        return
    backend, sep, model = spec.partition(":")
    if not sep or backend not in BACKENDS:
        known = sorted(AGENTS) + [f"{b}:<model>" for b in BACKENDS]
        close = difflib.get_close_matches(spec, [*AGENTS, *BACKENDS], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown agent {spec!r}; known: {known}.{hint}")
    if not model:
        raise ValueError(f"agent spec {spec!r} names no model: write {backend}:<model name or path>")


def check_agent(spec: str, options: Mapping[str, Any] | None = None) -> None:
    """Raise ValueError or TypeError, saying the fix, if `make_agent(spec, options)` would fail on
    its arguments, or ImportError with the pip line if the backend's extra is not installed;
    builds nothing (only the backend's module is imported, not its heavy deps)."""
    _split(spec, options)


def make_agent(spec: str, options: Mapping[str, Any] | None = None) -> Agent:
    """Build an agent from its spec.

    Specs: a scripted baseline (`solver`, `no-tool`), or `<backend>:<model>` with backend
    `openai` (model name on the server), `transformers` or `vllm` (a local model folder).
    `options` go to the model backend's constructor (see each class), except the sampling
    settings `max_new_tokens`, `temperature`, `top_p`, `seed`, which form its
    `GenerationConfig`. Scripted baselines take no options. An unknown name suggests the closest.

    >>> make_agent("solver").name
    'solver'
    """
    factory, model, generation, options = _split(spec, options)
    if factory is None:
        return AGENTS[spec]()
    return factory(model, generation=generation, **options)


def _split(spec: str, options: Mapping[str, Any] | None):
    """(backend class, model, GenerationConfig, other options), checked; (None, ...) for a baseline."""
    _check_spec(spec)
    options = dict(options or {})
    if spec in AGENTS:
        return None, spec, None, {}
    backend, _, model = spec.partition(":")
    generation = GenerationConfig(**{k: options.pop(k) for k in list(options) if k in _GENERATION_FIELDS})
    options.setdefault("name", spec)
    module, _, cls = BACKENDS[backend].partition(":")
    factory = getattr(importlib.import_module(module), cls)
    factory.check_installed()  # the backend's extra, before a run writes anything
    try:
        inspect.signature(factory).bind(model, generation=generation, **options)
    except TypeError as error:
        raise TypeError(f"bad option for agent {spec!r}: {error}") from None
    return factory, model, generation, options
