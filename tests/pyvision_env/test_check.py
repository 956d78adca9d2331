"""`check_data`: every image and every video frame of a data file is decoded, and the bad rows come back typed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av", reason="writing test videos needs PyAV (pip install av)")

from pyvision_env.media.encode import write_video  # noqa: E402
from pyvision_env.media.video import open_video  # noqa: E402
from pyvision_env.tasks.check import BadRow, check_data  # noqa: E402
from pyvision_env.tasks.loaders import DatasetError  # noqa: E402

FRAMES = 90


def write_clip(path: Path, seed: int = 0) -> Path:
    """A noisy 90-frame clip (noise keeps every frame's packet large, so the middle of the file is frame data)."""
    rng = np.random.default_rng(seed)
    frames = (rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8) for _ in range(FRAMES))
    return write_video(path, frames, fps=15.0, gop=15)


def corrupt_middle(path: Path) -> Path:
    """Overwrite 4 kB in the middle of the file with random bytes (the index at the end stays intact)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:60])
    write_clip(tmp_path / "good.mp4")
    corrupt_middle(write_clip(tmp_path / "broken.mp4", seed=2))
    return tmp_path


def row(row_id: str, **fields) -> dict:
    return {"id": row_id, "question": "What?", "answer": "yes", **fields}


def write_rows(folder: Path, rows: list) -> Path:
    path = folder / "val.json"
    path.write_text(json.dumps(rows))
    return path


def test_a_video_corrupt_in_the_middle_passes_the_reset_check_but_not_this_one(data_dir):
    with open_video(data_dir / "broken.mp4") as reader:  # what reset checks: first and last frames
        assert len(reader) == FRAMES
    bad = check_data(write_rows(data_dir, [row("v", video_path="broken.mp4")]))
    assert len(bad) == 1
    (found,) = bad
    assert (found.row, found.task_id, found.field, found.path) == (0, "v", "video_path", str(data_dir / "broken.mp4"))
    assert "does not decode" in found.error and "frame" in found.error


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_both_readers_find_the_corrupt_frames(data_dir, backend):
    if backend == "decord":
        pytest.importorskip("decord", reason="decord is not installed")
    bad = check_data(write_rows(data_dir, [row("v", video_path="broken.mp4")]), video_backend=backend)
    assert [b.field for b in bad] == ["video_path"]


def test_every_kind_of_bad_row_is_listed_and_good_rows_are_not(data_dir):
    rows = [
        row("ok-image", image_path="good.png"),
        row("ok-video", video_path="good.mp4"),
        row("cut-image", image_path=["good.png", "cut.png"]),
        row("missing", video_path="nowhere.mp4"),
        {"id": "no-answer", "question": "What?", "image_path": "good.png"},
        ["not", "an", "object"],
        {"prompt": "What?", "reward_model": {"ground_truth": "B"},
         "mm_hint": {"hint_path": ["good.mp4", "broken.mp4"], "hint_type": "video"}, "extra_info": {"index": 9}},
    ]
    bad = check_data(write_rows(data_dir, rows))
    assert all(isinstance(b, BadRow) for b in bad)
    summary = [(b.row, b.task_id, b.field, Path(b.path).name if b.path else None) for b in bad]
    assert summary == [
        (2, "cut-image", "image_path[1]", "cut.png"),
        (3, "missing", "video_path", "nowhere.mp4"),
        (4, "no-answer", "answer", None),
        (5, None, None, None),
        (6, "9", "mm_hint.hint_path[1]", "broken.mp4"),
    ]
    assert "not found" in bad[1].error and "cannot read image" in bad[0].error
    assert str(bad[2]).startswith("row 4 (id 'no-answer'), field 'answer': ")


def test_a_clean_file_has_no_bad_rows(data_dir):
    assert check_data(write_rows(data_dir, [row("a", image_path="good.png"), row("b", video_path="good.mp4")])) == []


def test_an_unreadable_file_raises(tmp_path):
    with pytest.raises(DatasetError, match="data file not found"):
        check_data(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="invalid JSON"):
        check_data(tmp_path / "bad.json")


def test_jsonl_lines_that_are_not_json_are_bad_rows(tmp_path):
    path = tmp_path / "val.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{oops\n')
    (found,) = check_data(path)
    assert (found.row, found.field, found.path) == (1, None, None) and "invalid JSON" in found.error
