"""Benchmark results on disk: an append-only JSONL file that survives a killed run, plus images."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from pyvision_agents.runner import EpisodeRecord

RESULTS_FILE = "episodes.jsonl"
IMAGES_DIR = "images"


def episode_key(record: dict[str, Any]) -> tuple[str, str, int]:
    """The identity of an episode in a run: (env id, agent name, episode index)."""
    return (record["env_id"], record["agent"], int(record["episode"]))


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each episode's last record (a retried episode supersedes its failed record), in first-seen order."""
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for record in records:
        latest[episode_key(record)] = record
    return list(latest.values())


class ResultsFile:
    """Episode records, one JSON object per line, with each episode's images as PNG files.

    An episode's images are written first (under `images/`, named by content so an image shared
    by episodes is stored once), then its record in one `write`,
    fsynced; so a run killed at any point leaves every finished episode on disk, complete. A torn
    last line (killed mid-write) is cut off when the file is opened again, so the rerun redoes
    only that episode (rewriting its images). A record's `image_files` lists its images, relative
    to the output folder, in transcript order. The file is only ever appended to: an episode
    played again (after an infrastructure error) gets a new line, and its last line counts.
    """

    def __init__(self, out_dir: str | Path, *, save_images: bool = True):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RESULTS_FILE
        self.save_images = save_images
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = list(self._read_and_repair())

    def append(self, record: EpisodeRecord) -> None:
        """Write one finished episode (images, then the record line)."""
        data = record.to_json()
        data["image_files"] = self._write_images(record) if self.save_images else []
        line = json.dumps(data, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.records.append(data)

    def _write_images(self, record: EpisodeRecord) -> list[str]:
        from PIL import Image

        names = []
        for image in record.images:
            name = f"{IMAGES_DIR}/{_image_key(image)}.png"
            path = self.out_dir / name
            if not path.exists():  # content-addressed: a prompt image shared by agents is stored once
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                Image.fromarray(image).save(tmp, format="PNG", compress_level=3)
                os.replace(tmp, path)
            names.append(name)
        return names

    def _read_and_repair(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # torn last line from a killed run: cut it off
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as handle:
                handle.truncate(len(raw))
        for number, line in enumerate(raw.splitlines(), start=1):
            try:
                record = json.loads(line)
                episode_key(record)
            except (ValueError, KeyError, TypeError):
                warnings.warn(f"{self.path}:{number}: not an episode record; left in place, ignored")
                continue
            yield record


def read_records(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every episode record line of a benchmark folder (read-only: a torn last line is skipped)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {RESULTS_FILE} in {out_dir}: run `pyvision-env bench --out {out_dir}` first")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a whole file under a temporary name and move it into place (never a half file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _image_key(image: np.ndarray) -> str:
    digest = hashlib.sha1(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()[:20]
