"""Dataset loaders: PyVision / PyVision-RL JSON and JSONL rows to `Task` records."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from pyvision_env.answers import (
    ANSWER_TYPES,
    GRADING_MODES,
    bare_letter,
    choice_index,
    letter_of_option_text,
    parse_choices,
    parse_number,
)
from pyvision_env.tasks.task import Task

# Keys under which a JSON object may hold its list of rows, tried in this order.
ROW_LIST_KEYS: tuple[str, ...] = ("data", "rows", "tasks", "items", "examples")

_RAW_FIELDS = frozenset(
    {"id", "question", "answer", "answer_type", "choices", "data_source", "ability",
     "image_path", "image_path_list", "video_path"}
)
_PROCESSED_FIELDS = frozenset(
    {"id", "prompt", "reward_model", "extra_info", "mm_hint", "answer_type", "choices",
     "data_source", "ability"}
)
_PROCESSED_MARKERS = ("prompt", "reward_model", "mm_hint")
_NOTHING = object()


class DatasetError(ValueError):
    """A data file, or one row of it, cannot be turned into tasks.

    The message names the file, the row (0-based index, its id when known, and its
    line for JSONL), the field, and what was expected there. The same facts are
    attributes: `row` (0-based index), `row_id` and `field`, each None when the error
    is not about one row, its id is unknown, or no single field is at fault.
    """

    def __init__(self, message: str, *, row: int | None = None, row_id: str | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.row, self.row_id, self.field = row, row_id, field


class DatasetWarning(UserWarning):
    """A malformed row was skipped because the file was loaded with `strict=False`."""


@dataclass(frozen=True)
class LoadReport:
    """What `load_tasks_report` read from one file.

    Attributes:
        tasks: the tasks, in file order.
        skipped: one message per skipped row (empty when loading strictly).
    """

    tasks: list[Task]
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RowResult:
    """One row of a data file as `read_rows` read it: its task, or why it is not one.

    Attributes:
        index: the row's 0-based index in the file.
        task: the task, or None when the row is malformed.
        error: why the row is not a task, or None.
        media_fields: the field each of `task.images`, then each of `task.videos`, came
            from (`"image_path"`, `"video_path[1]"`, `"mm_hint.hint_path"`, ...).
    """

    index: int
    task: Task | None
    error: DatasetError | None = None
    media_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Row:
    """One row's position in its file, for error messages."""

    file: Path
    index: int
    line: int | None = None
    row_id: str | None = None

    def where(self) -> str:
        """`file: row N (line L, id 'x')`, the prefix of every message about this row."""
        details = [f"line {self.line}"] if self.line is not None else []
        details += [f"id {self.row_id!r}"] if self.row_id is not None else []
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{self.file}: row {self.index}{suffix}"

    def error(self, field_name: str, expected: str, got: Any = _NOTHING) -> DatasetError:
        """A `DatasetError` about `field_name` of this row, showing the bad value when given."""
        got_text = "" if got is _NOTHING else f", got {_describe(got)}"
        return DatasetError(f"{self.where()}, field {field_name!r}: expected {expected}{got_text}",
                            row=self.index, row_id=self.row_id, field=field_name)

    def missing(self, field_name: str, expected: str) -> DatasetError:
        """A `DatasetError` saying that `field_name` is absent from this row."""
        return DatasetError(f"{self.where()}, field {field_name!r} is missing: expected {expected}",
                            row=self.index, row_id=self.row_id, field=field_name)


def load_tasks(path: str | Path, *, strict: bool = True, check_media: bool = True) -> list[Task]:
    """Load the tasks of one PyVision-style data file; see `load_tasks_report` for formats."""
    return load_tasks_report(path, strict=strict, check_media=check_media).tasks


def load_tasks_report(path: str | Path, *, strict: bool = True, check_media: bool = True) -> LoadReport:
    """Read a JSON or JSONL data file into tasks, and report which rows were skipped.

    File: `.jsonl` is one JSON object per line (blank lines ignored); anything else is
    JSON holding a list of rows, or an object with that list under one of
    `ROW_LIST_KEYS` ("data", "rows", "tasks", "items", "examples").

    Row forms (both from PyVision-RL's `verl/utils/dataset/rl_dataset_wo_mm_hint.py`):

    - raw (PyVision's validation sets):
      `{"id": 3, "question": str, "answer": str | number, "data_source": str,
      "ability": str, "image_path": str | [str]}`, or `"video_path": str | [str]` for
      video; `"image_path_list": [str]` (the original PyVision demo's key) also works.
    - processed (PyVision-RL's training sets, what `transfer_to_rl_form_*` writes):
      `{"prompt": [{"role": "user", "content": str}], "data_source": str,
      "ability": str, "env_name": str, "reward_model": {"ground_truth": ..., "style": "model"},
      "extra_info": {"answer", "index", "question", "split"},
      "mm_hint": {"hint_path": str | [str], "hint_type": "image" | "video"}}`.
      The question is `extra_info["question"]` when present (the bare question), else
      the text of the last user message of `prompt` (a string, a message list whose
      content is a string, or a list of `{"type": "text", "text": ...}` parts). The id
      is `extra_info["index"]` (or `"id"`), else the row's `"id"`.

    In both forms the id defaults to `<file stem>-<row index>`; optional `answer_type`
    ("choice" | "number" | "text"), `choices` (list of option texts) and `grading`
    ("exact" | "mra", read by the number grader) override inference. Otherwise the
    answer type is inferred: a single letter whose options appear in the question
    (lines `A. ...`, `(A) ...`, `A) ...`, `A: ...`, or inline `(A) ... (B) ...`), or
    option text equal to one of them, is "choice" (the answer is stored as the letter);
    an answer that is exactly one number (`12`, `-3.5`, `1e3`, `1,234`) is "number";
    anything else is "text".

    Media paths are resolved against the data file's directory (absolute paths kept)
    and, with `check_media`, must exist. `Task.source` is `data_source`; `Task.extra`
    holds `ability`, `extra_info` and every field this loader does not read.

    Raises:
        DatasetError: the file cannot be read or is not valid JSON / JSONL, or (with
            `strict=True`) a row is malformed or names missing media. With
            `strict=False` such rows are skipped with a `DatasetWarning` and listed in
            `LoadReport.skipped`; an unreadable file still raises.
    """
    tasks: list[Task] = []
    skipped: list[str] = []
    for result in read_rows(path, check_media=check_media):
        if result.error is None:
            tasks.append(result.task)
            continue
        if strict:
            raise result.error
        skipped.append(str(result.error))
        warnings.warn(f"skipping row: {result.error}", DatasetWarning, stacklevel=2)
    return LoadReport(tasks=tasks, skipped=skipped)


def read_rows(path: str | Path, *, check_media: bool = True) -> Iterator[RowResult]:
    """Each row of a data file as a `RowResult`: its task, or the `DatasetError` that kept it from one.

    Formats and checks as in `load_tasks_report`, which is this plus the strict / skip policy.

    Raises:
        DatasetError: the file cannot be read, or is not valid JSON (a JSONL line that is
            not valid JSON is that row's error instead).
    """
    for position, parsed in _read_rows(Path(path)):
        try:
            if isinstance(parsed, DatasetError):
                raise parsed
            task, fields = _row_to_task(parsed, position, check_media)
        except DatasetError as exc:
            yield RowResult(position.index, None, exc)
        else:
            yield RowResult(position.index, task, None, fields)


# ---------------------------------------------------------------- reading files


def _read_rows(file: Path) -> Iterator[tuple[_Row, Any]]:
    """Yield each row with its position; a JSONL line that fails to parse yields its error."""
    text = _read_text(file)
    if file.suffix.lower() == ".jsonl":
        yield from _jsonl_rows(file, text)
        return
    for index, row in enumerate(_json_rows(file, text)):
        yield _Row(file, index), row


def _read_text(file: Path) -> str:
    """The file's text, or a `DatasetError` naming it."""
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{file}: data file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{file}: cannot read the data file as UTF-8 text: {exc}") from exc


def _json_rows(file: Path, text: str) -> list[Any]:
    """The list of rows of a JSON file."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for key in ROW_LIST_KEYS:
            if isinstance(document.get(key), list):
                return document[key]
    raise DatasetError(
        f"{file}: expected a JSON list of rows, or an object with the list under one of "
        f"{list(ROW_LIST_KEYS)}, got {_describe(document)}"
    )


def _jsonl_rows(file: Path, text: str) -> Iterator[tuple[_Row, Any]]:
    """Rows of a JSONL file, one per non-blank line."""
    index = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        position = _Row(file, index, line=line_number)
        try:
            yield position, json.loads(line)
        except json.JSONDecodeError as exc:
            yield position, DatasetError(f"{position.where()}: invalid JSON at column {exc.colno}: {exc.msg}",
                                         row=index)
        index += 1


# ---------------------------------------------------------------- one row


def _row_to_task(row: Any, position: _Row, check_media: bool) -> tuple[Task, tuple[str, ...]]:
    """Build one task from one row of either form; also the field each of its images, then videos, came from."""
    if not isinstance(row, dict):
        raise DatasetError(f"{position.where()}: expected a JSON object, got {_describe(row)}", row=position.index)
    processed = any(key in row for key in _PROCESSED_MARKERS)
    extra_info = _extra_info(row, position) if processed else {}
    position = _Row(position.file, position.index, position.line, _row_id(row, extra_info, position))
    question = _processed_question(row, extra_info, position) if processed else _question(row, position)
    answer = _answer(row, position, processed)
    images, videos = _processed_media(row, position) if processed else _raw_media(row, position)
    resolve = _media_resolver(position, check_media)
    answer_type, choices, answer = _answer_kind(row, question, answer, position)
    task = Task(
        id=position.row_id,
        question=question,
        answer=answer,
        answer_type=answer_type,
        choices=choices,
        images=tuple(resolve(name, item) for name, item in images),
        videos=tuple(resolve(name, item) for name, item in videos),
        source=_optional_str(row, "data_source", position),
        extra=_extra(row, processed, position),
    )
    return task, tuple(name for name, _ in (*images, *videos))


def _row_id(row: Mapping[str, Any], extra_info: Mapping[str, Any], position: _Row) -> str:
    """The row's id: extra_info's index/id, the row's id, or `<stem>-<index>`."""
    for source, key, name in ((extra_info, "index", "extra_info.index"), (extra_info, "id", "extra_info.id"),
                              (row, "id", "id")):
        value = source.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise position.error(name, "a string or an integer", value)
        return str(value)
    return f"{position.file.stem}-{position.index}"


def _question(row: Mapping[str, Any], position: _Row) -> str:
    """A raw row's question."""
    return _required_str(row, "question", position)


def _processed_question(row: Mapping[str, Any], extra_info: Mapping[str, Any], position: _Row) -> str:
    """A processed row's question: extra_info.question, else the prompt's last user text."""
    question = extra_info.get("question")
    if isinstance(question, str) and question.strip():
        return question
    if "prompt" not in row:
        raise position.missing("prompt", "a prompt (or extra_info.question) holding the question")
    text = _prompt_text(row["prompt"])
    if text is None or not text.strip():
        raise position.error(
            "prompt", "a string or a list of chat messages whose last user message holds text", row["prompt"]
        )
    return text


def _prompt_text(prompt: Any) -> str | None:
    """The text of a prompt string, or of the last user message of a chat message list."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, list):
        return None
    users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(parts) if parts else None
    return None


def _answer(row: Mapping[str, Any], position: _Row, processed: bool) -> str:
    """The ground truth as a string: `answer` (raw) or `reward_model.ground_truth` (processed)."""
    if processed:
        reward_model = row.get("reward_model")
        if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
            raise position.error("reward_model", 'an object with a "ground_truth"', reward_model)
        value, name = reward_model["ground_truth"], "reward_model.ground_truth"
    else:
        if "answer" not in row:
            raise position.missing("answer", "the ground-truth answer (a string or a number)")
        value, name = row["answer"], "answer"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise position.error(name, "a string or a number", value)
    text = str(value).strip()
    if not text:
        raise position.error(name, "a non-empty answer", value)
    return text


def _extra_info(row: Mapping[str, Any], position: _Row) -> dict[str, Any]:
    """A processed row's `extra_info` object (empty when absent)."""
    value = row.get("extra_info", {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise position.error("extra_info", "an object", value)
    return value


def _extra(row: Mapping[str, Any], processed: bool, position: _Row) -> dict[str, Any]:
    """Task.extra: ability, extra_info and the fields the loader does not read."""
    known = _PROCESSED_FIELDS if processed else _RAW_FIELDS
    extra = {key: value for key, value in row.items() if key not in known}
    for key in ("ability", "extra_info"):
        if row.get(key) is not None:
            extra[key] = row[key]
    grading = extra.get("grading")
    if grading is not None and grading not in GRADING_MODES:
        raise position.error("grading", f"one of {list(GRADING_MODES)}", grading)
    return extra


# ---------------------------------------------------------------- media


def _raw_media(row: Mapping[str, Any], position: _Row) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(field name, path) pairs for a raw row's images and videos."""
    images = _path_list(row, "image_path", position) + _path_list(row, "image_path_list", position)
    return images, _path_list(row, "video_path", position)


def _processed_media(row: Mapping[str, Any], position: _Row) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(field name, path) pairs for a processed row's `mm_hint`."""
    hint = row.get("mm_hint")
    if hint is None:
        return [], []
    if not isinstance(hint, dict):
        raise position.error("mm_hint", 'an object with "hint_path" and "hint_type"', hint)
    kind = hint.get("hint_type")
    if kind not in ("image", "video"):
        raise position.error("mm_hint.hint_type", '"image" or "video"', kind)
    paths = [(f"mm_hint.{name}", path) for name, path in _path_list(hint, "hint_path", position)]
    if not paths:
        raise position.missing("mm_hint.hint_path", "a path or a list of paths")
    return (paths, []) if kind == "image" else ([], paths)


def _path_list(holder: Mapping[str, Any], key: str, position: _Row) -> list[tuple[str, str]]:
    """(field name, path) pairs from a field that holds a path or a list of paths."""
    value = holder.get(key)
    if value is None:
        return []
    if isinstance(value, str) and value.strip():
        return [(key, value)]
    if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
        return [(f"{key}[{i}]", item) for i, item in enumerate(value)]
    raise position.error(key, "a non-empty path or a list of non-empty paths", value)


def _media_resolver(position: _Row, check_media: bool) -> Callable[[str, str], Path]:
    """A function mapping (field name, path) to an absolute Path, checking it exists."""
    base = position.file.resolve().parent

    def resolve(name: str, raw_path: str) -> Path:
        path = Path(raw_path).expanduser()
        path = path if path.is_absolute() else base / path
        if check_media and not path.is_file():
            raise position.error(name, f"an existing media file, but {path} was not found")
        return path

    return resolve


# ---------------------------------------------------------------- answer type


def _answer_kind(
    row: Mapping[str, Any], question: str, answer: str, position: _Row
) -> tuple[str, tuple[str, ...], str]:
    """(answer_type, choices, answer) from explicit fields or by inference."""
    choices = _explicit_choices(row, position) or parse_choices(question)
    explicit = row.get("answer_type")
    if explicit is not None and explicit not in ANSWER_TYPES:
        raise position.error("answer_type", f"one of {list(ANSWER_TYPES)}", explicit)
    letter = _choice_letter(answer, choices)
    if explicit == "choice" and letter is None and not choices:
        letter = bare_letter(answer)
    if explicit == "choice" or (explicit is None and letter is not None):
        if letter is None:
            raise position.error("answer", "an option letter (or option text) for a choice question", answer)
        return "choice", choices, letter
    if explicit == "number" or (explicit is None and parse_number(answer, allow_unit=False) is not None):
        if parse_number(answer) is None:
            raise position.error("answer", "a number for a number question", answer)
        return "number", choices, answer
    return "text", choices, answer


def _choice_letter(answer: str, choices: tuple[str, ...]) -> str | None:
    """The option letter `answer` names among `choices` (as a letter or as option text), or None."""
    letter = bare_letter(answer)
    if letter is not None:
        return letter if choice_index(letter) < len(choices) else None
    return letter_of_option_text(answer, choices)


def _explicit_choices(row: Mapping[str, Any], position: _Row) -> tuple[str, ...]:
    """A row's own `choices` list of option texts, or ()."""
    value = row.get("choices")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise position.error("choices", "a list of option texts", value)
    return tuple(value)


# ---------------------------------------------------------------- small helpers


def _required_str(row: Mapping[str, Any], key: str, position: _Row) -> str:
    """A field that must hold a non-blank string."""
    if key not in row:
        raise position.missing(key, "a non-empty string")
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise position.error(key, "a non-empty string", value)
    return value


def _optional_str(row: Mapping[str, Any], key: str, position: _Row) -> str:
    """A field that may be absent, else holds a string."""
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise position.error(key, "a string", value)
    return value


def _describe(value: Any) -> str:
    """A short description of a JSON value for error messages."""
    if value is None:
        return "null"
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{type(value).__name__} {shown}"
