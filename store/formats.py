"""Reads labelled files in every format of the contract, detected from the content, not the name.

A bad line is rejected with its number and reason and the rest is kept; a file that is no format
at all raises `UnreadableFile` so that nothing is stored.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import SwitchboardError
from store.names import MAX_LABEL_CHARS, BadName, check_department_name
from store.tables import OUT_OF_SCOPE

MAX_LINE_BYTES = 256 * 1024
MAX_TEXT_CHARS = 20_000


class UnreadableFile(SwitchboardError, ValueError):
    """The file as a whole is not a labelled data set; the message is one line for the user."""


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ParsedFile:
    format: str
    examples: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    label_map: Mapping[str, str] | None = None
    out_of_scope_label: str | None = None  # the file's name for "no department"; stored as `OUT_OF_SCOPE`

    @property
    def out_of_scope(self) -> int:
        return sum(label == OUT_OF_SCOPE for _, label in self.examples)


class _BadRecord(ValueError):
    pass


def read_labelled_file(path: Path, *, label_map: Mapping[str, str] | None = None,
                       out_of_scope_label: str | None = None) -> ParsedFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\x00" in raw[:8192]:
        raise UnreadableFile(f"{path} is a binary file, not CSV, JSON or JSONL")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{path} is not UTF-8 text (byte {exc.start})") from None
    if not content.strip():
        raise UnreadableFile(f"{path} is empty")
    parsed = ParsedFile(format=_detect(content), label_map=label_map, out_of_scope_label=out_of_scope_label)
    {"json": _parse_json_document, "jsonl": _parse_jsonl, "csv": _parse_csv}[parsed.format](parsed, content, path)
    if not parsed.examples and not parsed.rejected:
        raise UnreadableFile(f"{path} holds no records")
    return parsed


def _detect(content: str) -> str:
    first = content.lstrip()[0]
    if first == "[" or (first == "{" and _is_single_json_document(content)):
        return "json"
    return "jsonl" if first == "{" else "csv"


def _is_single_json_document(content: str) -> bool:
    if len(content) > 64 * MAX_LINE_BYTES:
        return False
    try:
        value = json.loads(content)
    except (json.JSONDecodeError, RecursionError):
        return False
    return isinstance(value, dict) and not {"text", "messages", "prompt"} & value.keys()


def _parse_json_document(parsed: ParsedFile, content: str, path: Path) -> None:
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise UnreadableFile(f"{path}: JSON nested too deeply") from None
    records = value if isinstance(value, list) else value.get("data") or value.get("records") or [value]
    if not isinstance(records, list):
        raise UnreadableFile(f"{path}: expected a JSON array of records")
    for number, record in enumerate(records, start=1):
        _collect(parsed, number, record, what="record")


def _parse_jsonl(parsed: ParsedFile, content: str, path: Path) -> None:
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line.encode("utf-8")) > MAX_LINE_BYTES:
            parsed.rejected.append(Rejected(number, f"line is over {MAX_LINE_BYTES // 1024} KiB"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            parsed.rejected.append(Rejected(number, f"not JSON ({exc.msg})"))
            continue
        except RecursionError:
            parsed.rejected.append(Rejected(number, "JSON nested too deeply"))
            continue
        _collect(parsed, number, record, what="line")
    if not parsed.examples and all(r.reason.startswith("not JSON") for r in parsed.rejected):
        raise UnreadableFile(f"{path} looks like JSONL but no line is JSON")


def _parse_csv(parsed: ParsedFile, content: str, path: Path) -> None:
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (csv.Error, StopIteration):
        raise UnreadableFile(f"{path} is not CSV, JSON or JSONL") from None
    label_column = next((c for c in ("label", "category") if c in header), None)
    if "text" not in header or label_column is None:
        raise UnreadableFile(
            f"{path} is not a labelled CSV: need columns text and label (or category), found {header[:5]}"
        )
    text_at, label_at = header.index("text"), header.index(label_column)
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.rejected.append(Rejected(line, f"bad CSV ({exc})"))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            parsed.rejected.append(Rejected(line, f"{len(row)} columns, header has {len(header)}"))
            continue
        _collect(parsed, line, {"text": row[text_at], "label": row[label_at]}, what="row")


def _collect(parsed: ParsedFile, number: int, record: Any, *, what: str) -> None:
    try:
        text, label = _text_and_label(record, what)
        text, label = _checked_text(text), _checked_label(label)
        if parsed.out_of_scope_label is not None and label == parsed.out_of_scope_label:
            label = OUT_OF_SCOPE
        elif parsed.label_map is not None:
            if label not in parsed.label_map:
                raise _BadRecord(f"label {label!r} is not in the label map")
            label = _checked_label(parsed.label_map[label])
        if label != OUT_OF_SCOPE:
            check_department_name(label)
        parsed.examples.append((text, label))
    except (_BadRecord, BadName) as exc:
        parsed.rejected.append(Rejected(number, str(exc)))


def _text_and_label(record: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(record, dict):
        raise _BadRecord(f"{what} is not a JSON object")
    if "messages" in record or "conversations" in record:
        return _from_chat(record.get("messages") or record.get("conversations"))
    if "prompt" in record or "completion" in record:
        return record.get("prompt"), record.get("completion")
    return record.get("text"), record.get("label", record.get("category"))


def _from_chat(messages: Any) -> tuple[Any, Any]:
    """The last assistant message is the label; the user message before it is the text."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _BadRecord("messages is not a list of {role, content} objects")
    roles = [m.get("role", m.get("from")) for m in messages]
    last_answer = max((i for i, r in enumerate(roles) if r in ("assistant", "gpt")), default=None)
    if last_answer is None:
        raise _BadRecord("missing label: no assistant message")
    question = max((i for i, r in enumerate(roles[:last_answer]) if r in ("user", "human")), default=None)
    if question is None:
        raise _BadRecord("missing text: no user message before the assistant's")
    content = "content" if "content" in messages[last_answer] else "value"
    return messages[question].get(content), messages[last_answer].get(content)


def _checked_text(text: Any) -> str:
    if text is None:
        raise _BadRecord("missing text")
    if not isinstance(text, str):
        raise _BadRecord("text is not a string")
    text = text.strip()
    if not text:
        raise _BadRecord("empty text")
    if "\x00" in text:
        raise _BadRecord("text contains a NUL character")
    if len(text) > MAX_TEXT_CHARS:
        raise _BadRecord(f"text is over {MAX_TEXT_CHARS} characters")
    return text


def _checked_label(label: Any) -> str:
    if label is None:
        raise _BadRecord("missing label")
    if isinstance(label, int | float) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str):
        raise _BadRecord("label is not a string")
    label = " ".join(label.split())
    if not label:
        raise _BadRecord("empty label")
    if len(label) > MAX_LABEL_CHARS:
        raise _BadRecord(f"label is over {MAX_LABEL_CHARS} characters")
    return label


def read_label_map(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFile(f"label map {path} is not readable JSON ({exc})") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UnreadableFile(f"label map {path} must be a JSON object of raw label -> department")
    return {str(k): v for k, v in value.items()}
