"""Benchmark results on disk: an append-only JSONL file that survives a killed run."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

from agents.runner import EpisodeRecord

RESULTS_FILE = "episodes.jsonl"


def episode_key(record: dict[str, Any]) -> tuple[str, str, int]:
    return (record["env_id"], record["agent"], int(record["episode"]))


class ResultsFile:
    """Episode records, one JSON object per line.

    Each record is written whole with one `write` and fsynced, so a run killed at any point
    leaves every finished episode on disk; a torn last line (killed mid-write) is dropped and
    cut off when the file is opened again, so the rerun redoes only that episode.
    """

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / RESULTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict[str, Any]] = list(self._read_and_repair())

    def done(self) -> set[tuple[str, str, int]]:
        return {episode_key(record) for record in self.records}

    def append(self, record: EpisodeRecord) -> None:
        data = record.to_json()
        line = json.dumps(data, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.records.append(data)

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
