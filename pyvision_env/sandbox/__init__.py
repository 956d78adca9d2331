"""Sandboxes that run the model's code cells: the `Sandbox` interface and its backends."""

from __future__ import annotations

from typing import Callable

from pyvision_env.sandbox.base import (
    CellError,
    CellResult,
    CellStatus,
    Cut,
    Sandbox,
    SandboxConfig,
    truncate_middle,
)
from pyvision_env.sandbox.docker import DockerSandbox, docker_unavailable
from pyvision_env.sandbox.forked import SandboxStartError
from pyvision_env.sandbox.local import LocalSandbox

BACKENDS: dict[str, Callable[[SandboxConfig | None], Sandbox]] = {
    "local": LocalSandbox,
    "docker": DockerSandbox,
}


def make_sandbox(name: str = "local", config: SandboxConfig | None = None) -> Sandbox:
    """Create a (not yet started) sandbox of the named backend.

    Raises:
        ValueError: `name` is not a known backend.
    """
    try:
        backend = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown sandbox backend {name!r}; known backends: {known}") from None
    return backend(config)


def backend_unavailable(name: str) -> str | None:
    """Why backend `name` cannot run on this host, or None when it can (checks the daemon)."""
    if name == "docker":
        return docker_unavailable()
    if name not in BACKENDS:
        return f"unknown sandbox backend {name!r}"
    return None


__all__ = [
    "BACKENDS",
    "CellError",
    "CellResult",
    "CellStatus",
    "Cut",
    "DockerSandbox",
    "LocalSandbox",
    "Sandbox",
    "SandboxConfig",
    "SandboxStartError",
    "backend_unavailable",
    "make_sandbox",
    "truncate_middle",
]
