"""Agents by name, for the CLI and the benchmark harness."""

from __future__ import annotations

import difflib
from typing import Callable

from agents.base import Agent
from agents.scripted import NoToolAgent, SolverAgent

AGENTS: dict[str, Callable[[], Agent]] = {
    SolverAgent.name: SolverAgent,
    NoToolAgent.name: NoToolAgent,
}


def make_agent(name: str) -> Agent:
    """Build a registered agent; an unknown name suggests the closest one."""
    try:
        return AGENTS[name]()
    except KeyError:
        close = difflib.get_close_matches(name, AGENTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown agent {name!r}; known: {sorted(AGENTS)}.{hint}") from None
