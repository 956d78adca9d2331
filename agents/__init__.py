"""Agents that play pyvision-env episodes, the episode runner, and the benchmark harness."""

from agents.base import Agent, EpisodeContext
from agents.registry import AGENTS, make_agent

__all__ = ["AGENTS", "Agent", "EpisodeContext", "make_agent"]
