"""The JSON record stream: the records json.loads would give, and its errors at the same line and column,
whatever size of block the text is read in (synthetic documents only)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipelines import json_stream
from pipelines.json_stream import JsonSyntaxError, Number, RecordsNotFound

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)
blocks = st.sampled_from([1, 2, 3, 5, 8, 64, 1 << 20])
indents = st.sampled_from([None, 0, 1, 2])
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def loads(text: str) -> object:
    return json.loads(text, parse_int=Number, parse_float=Number, parse_constant=Number)


@contextmanager
def block_chars(n: int) -> Iterator[None]:
    before = json_stream.BLOCK_CHARS
    json_stream.BLOCK_CHARS = n
    try:
        yield
    finally:
        json_stream.BLOCK_CHARS = before


def records(text: str, block: int, path: tuple[str, ...] = ()) -> list[tuple[int, object]]:
    with block_chars(block):
        return list(json_stream.records(io.StringIO(text), path))


@FAST
@given(doc=st.lists(values, max_size=6), indent=indents, ascii_only=st.booleans(), block=blocks)
def test_an_array_gives_its_elements_numbered_from_one_whatever_the_block(doc, indent, ascii_only, block):
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only)
    assert records(text, block) == list(enumerate(loads(text), start=1))


@FAST
@given(
    doc=st.lists(values, min_size=1, max_size=5),
    indent=indents,
    cut=st.integers(min_value=0),
    drop=st.integers(min_value=0, max_value=3),
    insert=st.sampled_from(["", ",", ":", "{", "}", "[", "]", '"', "x", "1.", "\n", "\\", "\x01"]),
    block=blocks,
)
def test_a_damaged_array_fails_where_json_loads_says_with_its_words(doc, indent, cut, drop, insert, block):
    text = json.dumps(doc, indent=indent)
    cut %= len(text) + 1
    text = text[:cut] + insert + text[cut + drop :]
    assume(text.lstrip(" \t\n\r").startswith("["))
    try:
        expected = list(enumerate(loads(text), start=1))
    except json.JSONDecodeError as exc:
        with pytest.raises(JsonSyntaxError) as info:
            records(text, block)
        assert (info.value.msg, info.value.line, info.value.column) == (exc.msg, exc.lineno, exc.colno)
    else:
        assert records(text, block) == expected


@FAST
@given(docs=st.lists(st.dictionaries(st.text(max_size=4), values, max_size=3), min_size=2, max_size=5), block=blocks)
def test_ndjson_gives_each_line_numbered_by_line_blank_lines_skipped(docs, block):
    lines = [json.dumps(d) for d in docs]
    text = lines[0] + "\n\n" + "\r\n".join(lines[1:]) + "\n"
    numbers = [1, *range(3, len(docs) + 2)]
    assert records(text, block) == list(zip(numbers, [loads(line) for line in lines], strict=True))


@FAST
@given(items=st.lists(values, max_size=4), before=values, after=values, indent=indents, block=blocks)
def test_the_array_at_a_path_is_read_past_the_members_around_it(items, before, after, indent, block):
    text = json.dumps({"meta": before, "result": {"x": after, "data": items, "y": [after]}}, indent=indent)
    assert records(text, block, ("result", "data")) == list(enumerate(loads(text)["result"]["data"], start=1))


def test_the_one_array_holding_an_object_is_found_by_looking_and_named():
    text = '{"n": 2, "ids": [1, 2], "empty": [], "data": [3, {"a": 1}]}'
    with block_chars(4):
        walk = json_stream.records(io.StringIO(text))
        found = [next(walk), next(walk)]
        with pytest.raises(StopIteration) as end:
            next(walk)
    assert found == [(1, "3"), (2, {"a": "1"})] and end.value.value == "data"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": [{"x": 1}], "b": [{"y": 2}]}', ()),
        ('{"a": [1, 2]}', ()),
        ('{"a": {"b": 1}}', ("a", "b")),
        ('{"a": [{"x": 1}]}', ("b",)),
        ('{"a": [{"x": 1}], "a": [{"x": 2}]}', ("a",)),
        ('"text"', ()),
        ('[{"a": 1}]', ("a",)),
    ],
    ids=["two-arrays", "no-object", "not-an-array", "missing", "twice", "scalar", "array-not-at-path"],
)
def test_records_that_cannot_be_located_say_so(text, path):
    with pytest.raises(RecordsNotFound):
        records(text, 3, path)


def test_numbers_keep_the_text_they_were_written_with_across_a_block_end():
    expected = [(1, "1.10"), (2, "3201234567890123"), (3, "-0"), (4, "1e5")]
    assert records("[1.10, 3201234567890123, -0, 1e5]", 2) == expected


def test_a_byte_order_mark_left_in_the_text_is_skipped_even_when_a_block_holds_nothing_else():
    assert records('\ufeff[{"a": 1}]', 1) == [(1, {"a": "1"})]
