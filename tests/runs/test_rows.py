"""chatdsl.runs.rows: reading input rows (JSONL, CSV), writing output records, the resume scan."""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatdsl import ChatCompletionResponse, ChatDSLError, RateLimitError, RowError
from chatdsl.runs.rows import (
    OutputState,
    RecordWriter,
    Row,
    error_record,
    read_rows,
    response_record,
    row_format,
    scan_output,
)


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _good(rows: list[Row]) -> list[tuple[str, int, dict[str, Any]]]:
    assert [r.error for r in rows if r.error] == []
    return [(r.key, r.line, dict(r.values)) for r in rows]


# ------------------------------------------------------------------------------------------ JSONL


def test_jsonl_keys_are_the_id_or_the_line_number(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", '{"id": "a", "x": 1}\n\n{"x": 2}\n  \n{"id": 7, "x": "é"}\n')
    assert _good(list(read_rows(path))) == [
        ("a", 1, {"id": "a", "x": 1}),
        ("3", 3, {"x": 2}),
        ("7", 5, {"id": 7, "x": "é"}),
    ]


def test_jsonl_bom_crlf_and_no_final_newline(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", b'\xef\xbb\xbf{"x": "1"}\r\n{"x": "\\u2028 \xe2\x9c\x93"}')
    assert _good(list(read_rows(path))) == [("1", 1, {"x": "1"}), ("2", 2, {"x": "\u2028 ✓"})]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"x": ', "is not valid JSON"),
        ("[1, 2]", "is an array, not a JSON object"),
        ("42", "is a int, not a JSON object"),
        ('{"id": null}', "the id field is null; an id is a non-empty string or an integer"),
        ('{"id": ""}', "the id field is an empty string"),
        ('{"id": true}', "the id field is true"),
        ('{"id": 1.5}', "the id field is 1.5"),
    ],
)
def test_a_bad_jsonl_line_is_a_bad_row_naming_the_line(tmp_path: Path, line: str, problem: str) -> None:
    path = _write(tmp_path / "in.jsonl", '{"x": 1}\n' + line + '\n{"x": 3}\n')
    rows = list(read_rows(path))
    assert [r.key for r in rows] == ["1", "2", "3"]
    assert rows[0].error is None
    assert rows[2].error is None
    error = rows[1].error
    assert isinstance(error, RowError)
    assert isinstance(error, ValueError)
    assert (error.file, error.line) == (str(path), 2)
    assert problem in str(error)
    assert str(error).startswith(f"{path}:2: ")


def test_invalid_utf8_in_jsonl_is_a_bad_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", b'{"x": "\xff"}\n{"x": "ok"}\n')
    rows = list(read_rows(path))
    assert str(rows[0].error) == f"{path}:1: is not valid UTF-8"
    assert rows[1].error is None


def test_a_repeated_key_is_a_bad_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", '{"id": "2"}\n{"x": 1}\n{"id": "a"}\n{"id": "a"}\n')
    rows = list(read_rows(path))
    assert [r.error is None for r in rows] == [True, False, True, False]
    assert "the key '2' is already taken" in str(rows[1].error)
    assert str(rows[3].error).startswith(f"{path}:4: the key 'a'")


def test_an_id_equal_to_an_earlier_line_number_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", '{"x": 1}\n{"id": 1}\n{"id": "01"}\n{"id": "3"}\n{"id": "¹"}\n{"id": "٣"}\n')
    rows = list(read_rows(path))
    assert [(r.key, r.error is None) for r in rows] == [
        ("1", True),
        ("1", False),
        ("01", True),
        ("3", True),
        ("¹", True),  # digits, but not the line number 1
        ("٣", True),
    ]


def test_rows_are_read_lazily(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", '{"x": 1}\n{"x": \n')
    rows = read_rows(path)
    assert next(rows).key == "1"  # the bad second line is not read yet
    assert next(rows).error is not None


def test_row_errors_pickle(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", "[]\n")
    error = next(read_rows(path)).error
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.line, copy.file) == (str(error), 1, str(path))


# -------------------------------------------------------------------------------------------- CSV


def test_csv_quoting_bom_unicode_and_multiline_fields(tmp_path: Path) -> None:
    text = '\ufeffid,text\r\nt1,"a, ""quoted"" one"\r\n\r\nt2,"two\nlines"\r\nt3,日本語 ✓\r\n'
    path = _write(tmp_path / "in.csv", text)
    assert _good(list(read_rows(path))) == [
        ("t1", 2, {"id": "t1", "text": 'a, "quoted" one'}),
        ("t2", 4, {"id": "t2", "text": "two\nlines"}),
        ("t3", 6, {"id": "t3", "text": "日本語 ✓"}),
    ]


def test_csv_without_id_keys_rows_by_their_starting_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.csv", 'text\n"a\nb"\nc\n')
    assert _good(list(read_rows(path))) == [("2", 2, {"text": "a\nb"}), ("4", 4, {"text": "c"})]


def test_bad_csv_rows_name_their_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.csv", b'id,text\na,1\nb,"x"y\nc,1,2\nd,\xff\n,empty\ne,ok\n')
    rows = list(read_rows(path))
    assert [(r.key, r.error is None) for r in rows] == [
        ("a", True),
        ("3", False),
        ("4", False),
        ("5", False),
        ("6", False),
        ("e", True),
    ]
    messages = [str(r.error) for r in rows if r.error]
    assert "3: is not valid CSV" in messages[0]
    assert "4: has 3 fields, the header has 2" in messages[1]
    assert "5: is not valid UTF-8" in messages[2]
    assert "6: the id field is an empty string" in messages[3]


def test_an_unterminated_quote_is_a_bad_row_at_its_start(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.csv", 'text\nok\n"never closed\nmore\n')
    rows = list(read_rows(path))
    assert rows[0].error is None
    assert rows[1].line == 3
    assert "not valid CSV" in str(rows[1].error)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "has no header row"),
        ("\n\n", "has no header row"),
        ("a,a\n1,2\n", "names the column 'a' twice"),
        ("a,\n1,2\n", "column 2 of the header has no name"),
    ],
)
def test_a_csv_without_a_usable_header_raises(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path / "in.csv", text)
    with pytest.raises(RowError, match=problem):
        list(read_rows(path))


def test_the_format_is_guessed_by_suffix_then_content(tmp_path: Path) -> None:
    assert row_format(_write(tmp_path / "a.csv", '{"x": 1}\n')) == "csv"
    assert row_format(_write(tmp_path / "a.ndjson", "x\n1\n")) == "jsonl"
    assert row_format(_write(tmp_path / "a.txt", '\ufeff\n {"x": 1}\n')) == "jsonl"
    assert row_format(_write(tmp_path / "b.txt", "x,y\n1,2\n")) == "csv"
    assert _good(list(read_rows(tmp_path / "a.csv", format="jsonl"))) == [("1", 1, {"x": 1})]
    with pytest.raises(ValueError, match="'xml' is not"):
        read_rows(tmp_path / "a.csv", format="xml")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- output


def _response() -> ChatCompletionResponse:
    return ChatCompletionResponse.from_dict(
        {
            "id": "r1",
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )


def test_records_have_the_documented_shape() -> None:
    response = _response()
    assert response_record("k", response, latency_ms=12.345, attempts=2) == {
        "id": "k",
        "response": response.to_dict(),
        "latency_ms": 12.3,
        "attempts": 2,
    }
    error = RateLimitError("slow down", status_code=429, request_id="req-1", retry_after=1.0)
    assert error_record("k", error, latency_ms=None, attempts=3) == {
        "id": "k",
        "error": {"type": "RateLimitError", "message": str(error), "status_code": 429, "request_id": "req-1"},
        "latency_ms": None,
        "attempts": 3,
    }
    assert error_record("k", ValueError(), attempts=0)["error"] == {
        "type": "ValueError",
        "message": "ValueError",
        "status_code": None,
    }


def test_the_writer_appends_whole_lines_and_the_scan_reads_them(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with RecordWriter(out) as writer:
        writer.write(response_record("a", _response()))
        writer.write(error_record("b", RuntimeError("boom")))
        writer.write(response_record("c", {"id": "x"}))
        assert writer.written == 3
    assert writer.closed
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert all(json.loads(line)["id"] for line in lines[:-1])
    assert scan_output(out) == OutputState(done=frozenset({"a", "c"}), responses=2, errors=1)
    with pytest.raises(ValueError, match="closed"):
        writer.write({"id": "d"})


@pytest.mark.parametrize("cut", [1, 10, 57])
def test_a_torn_last_line_is_ignored_by_the_scan_and_cut_by_the_writer(tmp_path: Path, cut: int) -> None:
    out = tmp_path / "out.jsonl"
    with RecordWriter(out) as writer:
        writer.write(response_record("a", _response()))
    whole = out.read_bytes()
    line = json.dumps(response_record("b", _response())).encode()
    out.write_bytes(whole + line[:cut])  # a kill -9 in the middle of a write
    state = scan_output(out)
    assert (state.done, state.torn) == (frozenset({"a"}), cut)
    with RecordWriter(out) as writer:
        assert writer.repaired == cut
        writer.write(response_record("b", _response()))
    assert scan_output(out) == OutputState(done=frozenset({"a", "b"}), responses=2)


def test_a_torn_line_longer_than_the_read_chunk_is_cut_whole(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    head = b'{"id": "a", "response": {}}\n'
    torn = b'{"id": "b", "response": {"text": "' + b"x" * 150_000
    out.write_bytes(head + torn)
    with RecordWriter(out) as writer:
        assert writer.repaired == len(torn)
    assert out.read_bytes() == head


def test_a_file_of_one_torn_line_is_emptied(tmp_path: Path) -> None:
    out = _write(tmp_path / "out.jsonl", '{"id": "a", "resp')
    with RecordWriter(out) as writer:
        assert writer.repaired == 17
    assert out.read_bytes() == b""


def test_corrupt_lines_are_listed_not_counted(tmp_path: Path) -> None:
    text = '{"id": "a", "response": {}}\n\x00\x00\n[1]\n{"id": 1, "response": {}}\n{"id": "b"}\n'
    out = _write(tmp_path / "out.jsonl", text)
    assert scan_output(out) == OutputState(done=frozenset({"a"}), responses=1, bad_lines=(2, 3, 4, 5))
    assert scan_output(tmp_path / "missing.jsonl") == OutputState()


def test_two_writers_cannot_share_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with RecordWriter(out), pytest.raises(ChatDSLError, match="another run is writing"):
        RecordWriter(out)
    with RecordWriter(out, fsync_interval=0) as writer:  # the lock went with the first writer
        writer.write({"id": "x", "response": {}})


def test_fsync_interval_must_be_a_number_of_seconds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync_interval"):
        RecordWriter(tmp_path / "out.jsonl", fsync_interval=-1)
    assert not (tmp_path / "out.jsonl").exists()


# -------------------------------------------------------------------------------------- properties

_texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_keys = st.one_of(st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s), st.integers(-(10**6), 10**6))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.dictionaries(st.sampled_from(["a", "b", "ü"]), _texts), max_size=8),
    ids=st.lists(_keys, unique_by=str, max_size=8),
    blank=st.lists(st.booleans(), max_size=8),
    bom=st.booleans(),
)
def test_jsonl_rows_round_trip(
    tmp_path: Path, rows: list[dict[str, str]], ids: list[int | str], blank: list[bool], bom: bool
) -> None:
    for index, key in enumerate(ids[: len(rows)]):
        rows[index]["id"] = key  # type: ignore[assignment]
    lines = []
    for index, row in enumerate(rows):
        if index < len(blank) and blank[index]:
            lines.append("")
        lines.append(json.dumps(row, ensure_ascii=index % 2 == 0))
    path = _write(tmp_path / "in.jsonl", ("\ufeff" if bom else "") + "\n".join(lines))
    got = list(read_rows(path))
    assert [dict(r.values) for r in got] == rows
    explicit = {str(r["id"]) for r in rows if "id" in r}
    for row in got:
        if "id" in row.values:
            assert row.key == str(row.values["id"])
            assert row.error is None
        else:  # a line-number key may clash with an explicit id: then the row is refused, never merged
            assert row.key == str(row.line)
            assert (row.error is not None) == (row.key in explicit)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(
        st.text(
            st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00\r"),
            min_size=1,
            max_size=5,
        ),
        min_size=1,
        max_size=4,
        unique=True,
    ).filter(lambda h: all(c.strip() and "\x00" not in c for c in h)),
    data=st.data(),
    crlf=st.booleans(),
)
def test_csv_rows_round_trip(tmp_path: Path, header: list[str], data: st.DataObject, crlf: bool) -> None:
    # no "\r": the csv module writes one unquoted (with a "\n" line terminator) and then refuses to read it back
    cell = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00\r"), max_size=10)
    records = data.draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=6))
    records = [r for r in records if not (len(r) == 1 and not r[0].strip())]  # a blank line is no row
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(records)
    path = _write(tmp_path / "in.csv", buffer.getvalue())
    got = list(read_rows(path))
    assert [dict(r.values) for r in got] == [dict(zip(header, r, strict=True)) for r in records]
    if "id" not in header:
        assert all(r.error is None and r.key == str(r.line) for r in got)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(
        st.tuples(st.text(min_size=1, max_size=6), st.booleans(), _texts), max_size=10, unique_by=lambda t: t[0]
    ),
    cut=st.integers(0, 400),
)
def test_records_round_trip_through_writer_and_scan(
    tmp_path: Path, records: list[tuple[str, bool, str]], cut: int
) -> None:
    out = tmp_path / "out.jsonl"
    out.unlink(missing_ok=True)
    with RecordWriter(out, fsync_interval=None) as writer:
        for key, ok, text in records:
            writer.write(response_record(key, {"text": text}) if ok else error_record(key, RuntimeError(text)))
    whole = out.read_bytes()
    assert [json.loads(line)["id"] for line in whole.splitlines()] == [key for key, _, _ in records]
    assert scan_output(out).done == {key for key, ok, _ in records if ok}
    # a kill at any byte: the scan counts exactly the lines whose newline was written
    torn = whole[: max(0, len(whole) - cut)]
    out.write_bytes(torn)
    complete = torn[: torn.rfind(b"\n") + 1]
    kept = [json.loads(line) for line in complete.splitlines()]
    assert scan_output(out).done == {r["id"] for r in kept if "response" in r}
    with RecordWriter(out):
        pass
    assert out.read_bytes() == complete
