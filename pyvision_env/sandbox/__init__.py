"""Sandboxes that run the model's code cells: the `Sandbox` interface and its backends."""

from __future__ import annotations

from typing import Callable

from pyvision_env.sandbox.base import CellError, CellResult, CellStatus, Sandbox, SandboxConfig
from pyvision_env.sandbox.local import LocalSandbox, SandboxStartError

BACKENDS: dict[str, Callable[[SandboxConfig | None], Sandbox]] = {
    "local": LocalSandbox,
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


__all__ = [
    "BACKENDS",
    "CellError",
    "CellResult",
    "CellStatus",
    "LocalSandbox",
    "Sandbox",
    "SandboxConfig",
    "SandboxStartError",
    "make_sandbox",
]
