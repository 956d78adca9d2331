"""`pyvision-env check-data FILE`: exit 0 when clean, 1 with the bad rows listed, 2 when the file is unreadable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pyvision_agents.cli import main


@pytest.fixture
def files(tmp_path):
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:50])
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"id": "a", "question": "q", "answer": "x", "image_path": "good.png"}]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([
        {"id": "a", "question": "q", "answer": "x", "image_path": "good.png"},
        {"id": "b", "question": "q", "answer": "x", "image_path": "cut.png"},
    ]))
    return tmp_path


def test_clean_file_exits_0(files, capsys):
    assert main(["check-data", str(files / "good.json")]) == 0
    assert "no bad rows" in capsys.readouterr().out


def test_bad_rows_are_printed_and_exit_1(files, capsys):
    assert main(["check-data", str(files / "bad.json")]) == 1
    out = capsys.readouterr().out
    assert "row 1 (id 'b'), field 'image_path': cannot read image" in out and "1 bad row(s)" in out
    assert "id 'a'" not in out


def test_unreadable_file_exits_2_with_one_line(files, capsys):
    assert main(["check-data", str(files / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data file not found" in err
