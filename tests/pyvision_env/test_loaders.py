"""Tests for the PyVision / PyVision-RL dataset loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pyvision_env.tasks.loaders import (
    DatasetError,
    DatasetWarning,
    load_tasks,
    load_tasks_report,
    parse_choices,
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A folder with two small images and a stand-in video file."""
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 6), "red").save(tmp_path / "img" / "a.png")
    Image.new("RGB", (5, 5), "blue").save(tmp_path / "img" / "b.jpg")
    (tmp_path / "clip.mp4").write_bytes(b"not really a video")
    return tmp_path


def write_json(path: Path, rows: object) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def raw_row(**overrides: object) -> dict:
    row = {
        "id": 7,
        "question": "What colour is the car?",
        "answer": "red",
        "ability": "visual_search",
        "data_source": "vstar",
        "image_path": "img/a.png",
    }
    row.update(overrides)
    return row


def processed_row(**overrides: object) -> dict:
    row = {
        "prompt": [{"content": "Long template... Question: How many cars?", "role": "user"}],
        "data_source": "deepeyes",
        "ability": "counting",
        "env_name": "pyvision_gym_wo_image_hint",
        "reward_model": {"ground_truth": "3", "style": "model"},
        "extra_info": {"answer": "3", "index": 12, "question": "How many cars?", "split": "train"},
        "mm_hint": {"hint_path": "img/a.png", "hint_type": "image"},
    }
    row.update(overrides)
    return row


# ---------------------------------------------------------------- row forms


def test_raw_row_becomes_task(data_dir: Path) -> None:
    (task,) = load_tasks(write_json(data_dir / "val.json", [raw_row(extra_field=[1, 2])]))
    assert task.id == "7"
    assert task.question == "What colour is the car?"
    assert task.answer == "red"
    assert task.answer_type == "text"
    assert task.source == "vstar"
    assert task.images == ((data_dir / "img" / "a.png").resolve(),)
    assert task.videos == ()
    assert task.extra == {"ability": "visual_search", "extra_field": [1, 2]}


def test_processed_row_uses_extra_info_question_and_ground_truth(data_dir: Path) -> None:
    (task,) = load_tasks(write_json(data_dir / "train.json", [processed_row()]))
    assert task.id == "12"
    assert task.question == "How many cars?"
    assert task.answer == "3"
    assert task.answer_type == "number"
    assert task.source == "deepeyes"
    assert task.images == ((data_dir / "img" / "a.png").resolve(),)
    assert task.extra["env_name"] == "pyvision_gym_wo_image_hint"
    assert task.extra["ability"] == "counting"
    assert task.extra["extra_info"]["split"] == "train"


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param("How many cars?", id="string"),
        pytest.param([{"role": "user", "content": "How many cars?"}], id="message-list"),
        pytest.param(
            [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many cars?"}]},
            ],
            id="content-parts",
        ),
    ],
)
def test_processed_question_falls_back_to_prompt(data_dir: Path, prompt: object) -> None:
    row = processed_row(prompt=prompt, extra_info={"index": 1})
    (task,) = load_tasks(write_json(data_dir / "train.json", [row]))
    assert task.question == "How many cars?"


def test_processed_video_row(data_dir: Path) -> None:
    row = processed_row(mm_hint={"hint_path": "clip.mp4", "hint_type": "video"})
    (task,) = load_tasks(write_json(data_dir / "train.json", [row]))
    assert task.images == ()
    assert task.videos == ((data_dir / "clip.mp4").resolve(),)


def test_raw_video_row(data_dir: Path) -> None:
    row = raw_row(video_path="clip.mp4")
    del row["image_path"]
    (task,) = load_tasks(write_json(data_dir / "val.json", [row]))
    assert task.videos == ((data_dir / "clip.mp4").resolve(),)


def test_list_of_image_paths_keeps_order(data_dir: Path) -> None:
    row = raw_row(image_path=["img/b.jpg", "img/a.png"])
    (task,) = load_tasks(write_json(data_dir / "val.json", [row]))
    assert task.images == ((data_dir / "img" / "b.jpg").resolve(), (data_dir / "img" / "a.png").resolve())


def test_absolute_media_path_is_kept(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    image = elsewhere / "far.png"
    Image.new("RGB", (4, 4)).save(image)
    (task,) = load_tasks(write_json(data_dir / "val.json", [raw_row(image_path=str(image))]))
    assert task.images == (image,)


def test_media_resolve_against_the_data_file_folder_not_the_cwd(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    (data_dir / "sub").mkdir()
    path = write_json(data_dir / "sub" / "val.json", [raw_row(image_path="../img/a.png")])
    (task,) = load_tasks(path)
    assert Path(task.images[0]).resolve() == (data_dir / "img" / "a.png").resolve()


def test_missing_id_defaults_to_file_stem_and_index(data_dir: Path) -> None:
    row = raw_row()
    del row["id"]
    tasks = load_tasks(write_json(data_dir / "vstar.json", [raw_row(), row]))
    assert [t.id for t in tasks] == ["7", "vstar-1"]


# ---------------------------------------------------------------- file formats


def test_jsonl_with_blank_lines(data_dir: Path) -> None:
    path = write_jsonl(
        data_dir / "val.jsonl",
        [json.dumps(raw_row(id=1)), "", "   ", json.dumps(processed_row())],
    )
    assert [t.id for t in load_tasks(path)] == ["1", "12"]


def test_json_object_with_data_list(data_dir: Path) -> None:
    path = write_json(data_dir / "val.json", {"version": 2, "data": [raw_row()]})
    assert len(load_tasks(path)) == 1


def test_invalid_json_names_the_file(data_dir: Path) -> None:
    path = data_dir / "broken.json"
    path.write_text('[{"id": 1,', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"broken\.json: invalid JSON at line 1"):
        load_tasks(path)


def test_invalid_jsonl_line_names_file_row_and_line(data_dir: Path) -> None:
    path = write_jsonl(data_dir / "val.jsonl", [json.dumps(raw_row()), "", "{oops"])
    with pytest.raises(DatasetError, match=r"val\.jsonl: row 1 \(line 3\): invalid JSON"):
        load_tasks(path)


def test_json_that_is_not_a_list_of_rows(data_dir: Path) -> None:
    path = write_json(data_dir / "val.json", {"questions": []})
    with pytest.raises(DatasetError, match=r"val\.json: expected a JSON list of rows"):
        load_tasks(path)


def test_missing_data_file(data_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.json: data file not found"):
        load_tasks(data_dir / "nope.json")


# ---------------------------------------------------------------- answer types


@pytest.mark.parametrize(
    ("question", "choices"),
    [
        pytest.param("Pick one.\nA. cat\nB. dog\nC. bird", ("cat", "dog", "bird"), id="A-dot-lines"),
        pytest.param("Pick one.\n(A) cat\n(B) dog", ("cat", "dog"), id="paren-lines"),
        pytest.param("Pick one.\nA) cat\nB) dog", ("cat", "dog"), id="A-paren-lines"),
        pytest.param("Pick one.\nOptions:\nA: cat\nB: dog", ("cat", "dog"), id="colon-lines"),
        pytest.param("Pick one: (A) cat (B) dog (C) bird", ("cat", "dog", "bird"), id="inline"),
        pytest.param("Pick one: (A) cat, (B) dog", ("cat", "dog"), id="inline-commas"),
        pytest.param("Is it A. or not?", (), id="no-options"),
        pytest.param("Pick one.\nA. cat", (), id="single-option"),
        pytest.param("(A) cat (C) dog", (), id="letters-out-of-order"),
    ],
)
def test_parse_choices(question: str, choices: tuple[str, ...]) -> None:
    assert parse_choices(question) == choices


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param("B", "B", id="letter"),
        pytest.param("(b)", "B", id="paren-lower"),
        pytest.param("B.", "B", id="letter-dot"),
        pytest.param("dog", "B", id="option-text"),
    ],
)
def test_choice_answers_are_stored_as_letters(data_dir: Path, answer: str, expected: str) -> None:
    row = raw_row(question="Which animal?\nA. cat\nB. dog", answer=answer)
    (task,) = load_tasks(write_json(data_dir / "val.json", [row]))
    assert (task.answer_type, task.answer, task.choices) == ("choice", expected, ("cat", "dog"))


def test_letter_answer_without_options_is_text(data_dir: Path) -> None:
    (task,) = load_tasks(write_json(data_dir / "val.json", [raw_row(question="Which letter is shown?", answer="A")]))
    assert task.answer_type == "text"


def test_letter_answer_past_the_options_is_text(data_dir: Path) -> None:
    row = raw_row(question="Which?\n(A) cat\n(B) dog", answer="D")
    (task,) = load_tasks(write_json(data_dir / "val.json", [row]))
    assert task.answer_type == "text"


@pytest.mark.parametrize(
    ("answer", "answer_type"),
    [
        pytest.param("12", "number", id="int"),
        pytest.param(12, "number", id="json-int"),
        pytest.param(-3.5, "number", id="json-float"),
        pytest.param("-3.5", "number", id="negative-decimal"),
        pytest.param("1e3", "number", id="exponent"),
        pytest.param("1,234", "number", id="thousands"),
        pytest.param("12 cm", "text", id="with-unit"),
        pytest.param("1,23", "text", id="bad-separator"),
        pytest.param("3/4", "text", id="fraction"),
        pytest.param("two cars", "text", id="words"),
    ],
)
def test_number_inference(data_dir: Path, answer: object, answer_type: str) -> None:
    (task,) = load_tasks(write_json(data_dir / "val.json", [raw_row(answer=answer)]))
    assert task.answer_type == answer_type
    assert task.answer == str(answer)


def test_explicit_answer_type_choices_and_grading(data_dir: Path) -> None:
    row = raw_row(question="Which?", answer="B", answer_type="choice", choices=["up", "down"])
    number = raw_row(id=8, answer="2.5", answer_type="number", grading="mra")
    first, second = load_tasks(write_json(data_dir / "val.json", [row, number]))
    assert (first.answer_type, first.choices, first.answer) == ("choice", ("up", "down"), "B")
    assert (second.answer_type, second.extra["grading"]) == ("number", "mra")


def test_explicit_choice_with_options_only_in_the_image(data_dir: Path) -> None:
    row = raw_row(question="Which option in the picture is right?", answer="c", answer_type="choice")
    (task,) = load_tasks(write_json(data_dir / "val.json", [row]))
    assert (task.answer_type, task.answer, task.choices) == ("choice", "C", ())


# ---------------------------------------------------------------- malformed rows


@pytest.mark.parametrize(
    ("row", "message"),
    [
        pytest.param([1, 2], r"val\.json: row 1: expected a JSON object, got list", id="not-an-object"),
        pytest.param(
            {"id": "q9", "answer": "x", "image_path": "img/a.png"},
            r"val\.json: row 1 \(id 'q9'\), field 'question' is missing",
            id="no-question",
        ),
        pytest.param(
            {"id": "q9", "question": "Why?", "image_path": "img/a.png"},
            r"row 1 \(id 'q9'\), field 'answer' is missing",
            id="no-answer",
        ),
        pytest.param(
            {"id": "q9", "question": "Why?", "answer": ["x"]},
            r"row 1 \(id 'q9'\), field 'answer': expected a string or a number, got list",
            id="answer-list",
        ),
        pytest.param(
            {"id": "q9", "question": "Why?", "answer": True},
            r"field 'answer': expected a string or a number, got bool",
            id="answer-bool",
        ),
        pytest.param(
            {"id": "q9", "question": 5, "answer": "x"},
            r"field 'question': expected a non-empty string, got int 5",
            id="question-int",
        ),
        pytest.param(
            {"id": "q9", "question": "Why?", "answer": "x", "image_path": 3},
            r"field 'image_path': expected a non-empty path or a list of non-empty paths, got int 3",
            id="image-path-int",
        ),
        pytest.param(
            {"id": "q9", "question": "Why?", "answer": "x", "answer_type": "essay"},
            r"field 'answer_type': expected one of \['choice', 'number', 'text'\], got str 'essay'",
            id="bad-answer-type",
        ),
        pytest.param(
            {"id": "q9", "question": "Why?", "answer": "x", "answer_type": "number"},
            r"field 'answer': expected a number for a number question",
            id="number-type-non-number",
        ),
        pytest.param(
            {"id": "q9", "question": "Why?", "answer": "3", "grading": "fuzzy"},
            r"field 'grading': expected one of \['exact', 'mra'\]",
            id="bad-grading",
        ),
        pytest.param(
            {"id": [1], "question": "Why?", "answer": "x"},
            r"row 1, field 'id': expected a string or an integer",
            id="id-list",
        ),
        pytest.param(
            processed_row(reward_model={"style": "model"}),
            r"row 1 \(id '12'\), field 'reward_model': expected an object with a \"ground_truth\"",
            id="no-ground-truth",
        ),
        pytest.param(
            processed_row(mm_hint={"hint_path": "img/a.png", "hint_type": "audio"}),
            r"field 'mm_hint\.hint_type': expected \"image\" or \"video\", got str 'audio'",
            id="bad-hint-type",
        ),
        pytest.param(
            processed_row(extra_info={"index": 3}, prompt=[{"role": "assistant", "content": "hi"}]),
            r"row 1 \(id '3'\), field 'prompt': expected a string or a list of chat messages",
            id="prompt-without-user",
        ),
    ],
)
def test_malformed_row_error_names_file_row_and_field(data_dir: Path, row: object, message: str) -> None:
    path = write_json(data_dir / "val.json", [raw_row(), row])
    with pytest.raises(DatasetError, match=message):
        load_tasks(path)


def test_missing_media_is_an_error_at_load(data_dir: Path) -> None:
    path = write_json(data_dir / "val.json", [raw_row(image_path=["img/a.png", "img/gone.png"])])
    with pytest.raises(DatasetError) as info:
        load_tasks(path)
    message = str(info.value)
    assert "val.json: row 0 (id '7'), field 'image_path[1]'" in message
    assert str(data_dir / "img" / "gone.png") in message


def test_missing_media_can_be_allowed(data_dir: Path) -> None:
    path = write_json(data_dir / "val.json", [raw_row(image_path="img/gone.png")])
    (task,) = load_tasks(path, check_media=False)
    assert task.images == ((data_dir / "img" / "gone.png").resolve(),)


def test_missing_processed_media_names_mm_hint_field(data_dir: Path) -> None:
    row = processed_row(mm_hint={"hint_path": "gone.mp4", "hint_type": "video"})
    with pytest.raises(DatasetError, match=r"row 0 \(id '12'\), field 'mm_hint\.hint_path'"):
        load_tasks(write_json(data_dir / "train.json", [row]))


# ---------------------------------------------------------------- lenient loading


def test_non_strict_skips_bad_rows_with_warning_and_count(data_dir: Path) -> None:
    path = write_jsonl(
        data_dir / "val.jsonl",
        [
            json.dumps(raw_row(id=1)),
            json.dumps({"id": 2, "question": "Why?"}),
            "{not json",
            json.dumps(raw_row(id=4, image_path="img/gone.png")),
            json.dumps(raw_row(id=5)),
        ],
    )
    with pytest.warns(DatasetWarning) as caught:
        report = load_tasks_report(path, strict=False)
    assert [t.id for t in report.tasks] == ["1", "5"]
    assert len(report.skipped) == 3
    assert "row 1 (line 2, id '2'), field 'answer' is missing" in report.skipped[0]
    assert "row 2 (line 3): invalid JSON" in report.skipped[1]
    assert "field 'image_path'" in report.skipped[2]
    assert len(caught) == 3
    assert all("skipping row" in str(w.message) for w in caught)


def test_non_strict_load_tasks_returns_only_good_rows(data_dir: Path) -> None:
    path = write_json(data_dir / "val.json", [raw_row(), "junk"])
    with pytest.warns(DatasetWarning, match=r"row 1: expected a JSON object"):
        tasks = load_tasks(path, strict=False)
    assert [t.id for t in tasks] == ["7"]


def test_non_strict_still_raises_for_an_unreadable_file(data_dir: Path) -> None:
    path = data_dir / "broken.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_tasks(path, strict=False)


def test_strict_report_has_no_skips(data_dir: Path) -> None:
    report = load_tasks_report(write_json(data_dir / "val.json", [raw_row()]))
    assert (len(report.tasks), report.skipped) == (1, [])
