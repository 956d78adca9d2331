"""Packaging: three import packages with prefixed names, and dependencies that point one way."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# import name -> folder, as pyproject's package-dir maps them
FOLDERS = {"pyvision_env": "pyvision_env", "pyvision_agents": "agents", "pyvision_train": "train"}
# what each package may import of the others (pyvision_train -> pyvision_agents -> pyvision_env)
ALLOWED = {
    "pyvision_env": set(),
    "pyvision_agents": {"pyvision_env"},
    "pyvision_train": {"pyvision_env", "pyvision_agents"},
}
HEAVY = ("torch", "transformers", "vllm", "trl", "ray", "openai")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _present() -> dict[str, Path]:
    return {name: ROOT / folder for name, folder in FOLDERS.items() if (ROOT / folder).is_dir()}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in _present().items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join((name, *parts)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "pyproject lists packages that do not exist"


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FOLDERS))
def test_dependencies_point_one_way(package: str) -> None:
    folder = _present().get(package)
    if folder is None:
        pytest.skip(f"{package} has no folder in this checkout yet")
    forbidden = set(FOLDERS) - ALLOWED[package] - {package}
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & forbidden)
        for path in folder.rglob("*.py")
        if _imported_packages(path) & forbidden
    }
    assert offenders == {}, f"{package} may import only {sorted(ALLOWED[package])} of the others"


def test_env_package_stays_light_and_installs_no_short_names(tmp_path: Path) -> None:
    """Importing every pyvision_env module loads no heavy framework; `agents`/`train` are not
    importable from outside the checkout (no top-level module with those names is installed)."""
    script = f"""
import importlib, pkgutil, sys
import pyvision_env
for module in pkgutil.walk_packages(pyvision_env.__path__, "pyvision_env."):
    importlib.import_module(module.name)
heavy = sorted(name for name in {HEAVY!r} if name in sys.modules)
assert not heavy, f"pyvision_env imported {{heavy}}"
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("pyvision_agents", "pyvision_train"))
assert not leaked, f"pyvision_env imported {{leaked}}"
import importlib.util
for short in ("agents", "train"):
    assert importlib.util.find_spec(short) is None, f"a top-level {{short!r}} module is installed"
import pyvision_agents
"""
    # run from an empty folder so the checkout's own folders are not on sys.path
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_test_modules_have_unique_names() -> None:
    """The test folders are not packages: two test files of one name break collection."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
