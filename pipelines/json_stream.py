"""A JSON document's records, one at a time, from a text stream: memory follows the largest record, not the file.

Python's own decoder (`raw_decode`) parses each record; only the structure around the records (the array, the
objects on the way to it, NDJSON lines) is walked here. Numbers keep the text they were written with. Errors
carry the line and column of the whole document, as `json.loads` would give them.

Where the records are:
- a top-level array: its elements, numbered from 1;
- NDJSON (a complete object on the first line, more after it): each non-blank line, numbered by line;
- a `path` of member names (["result", "data"]): the array at the end of it;
- otherwise the one member of a top-level object that is an array holding an object (found by reading the
  document through once before its records).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from typing import IO, Any

BLOCK_CHARS = 1 << 20
NDJSON_PROBE_CHARS = 1 << 20  # a first line longer than this is not an NDJSON record
_WS = " \t\n\r"


class JsonSyntaxError(Exception):
    def __init__(self, msg: str, line: int, column: int) -> None:
        super().__init__(f"{msg}: line {line} column {column}")
        self.msg, self.line, self.column = msg, line, column


class RecordsNotFound(Exception):
    """The document is valid JSON but holds no array of records where one was looked for."""


class Number(str):
    """A JSON number kept as written ('1.10', a 16-digit NIK), so nothing is lost to float conversion."""


_DECODER = json.JSONDecoder(parse_int=Number, parse_float=Number, parse_constant=Number)


class _Text:
    """The document read a block at a time; `buf[pos:]` is what is left to parse. The consumed part is dropped
    as more is read, keeping the line and column where `buf` starts for error positions."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        first = stream.read(BLOCK_CHARS)
        self.buf = first.lstrip("\ufeff")  # positions count from after a byte-order mark, as before
        self.pos = 0
        self.eof = not first
        self.line = 1  # line of buf[0]
        self.column = 0  # 0-based column of buf[0] on its line

    def more(self) -> bool:
        """Read on, at least as much again as is pending (a record longer than a block costs O(n), not O(n²)).
        At the end nothing moves, so positions in `buf` stay valid."""
        if self.eof:
            return False
        pending = self.buf[self.pos :]
        block = self.stream.read(max(BLOCK_CHARS, len(pending)))
        if not block:
            self.eof = True
            return False
        done = self.buf[: self.pos]
        newlines = done.count("\n")
        if newlines:
            self.line += newlines
            self.column = len(done) - done.rfind("\n") - 1
        else:
            self.column += len(done)
        self.buf, self.pos = pending + block, 0
        return True

    def error(self, msg: str, pos: int | None = None) -> JsonSyntaxError:
        pos = self.pos if pos is None else pos
        newlines = self.buf.count("\n", 0, pos)
        if newlines:
            return JsonSyntaxError(msg, self.line + newlines, pos - self.buf.rfind("\n", 0, pos))
        return JsonSyntaxError(msg, self.line, self.column + pos + 1)

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end), left unread."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self.more():
                return ""

    def take(self, expected: str, msg: str) -> str:
        """Consume one of `expected` (after whitespace), or fail with json's own wording."""
        c = self.peek()
        if not c or c not in expected:
            raise self.error(msg)
        self.pos += 1
        return c

    def value(self) -> Any:
        """Decode the value at the cursor. A failure near the end of the buffer, or a value ending there (a
        number may go on), is retried with more text; an error clearly before the end, or at the end of the
        document, is the document's."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                truncated = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - 6
                if truncated and self.more():
                    continue
                raise self.error(exc.msg, exc.pos) from None
            if (end >= len(self.buf) or (type(value) is Number and len(self.buf) - end < 32)) and self.more():
                continue  # "1" of "1.5", or "1.5" of "1.5e3", cut at the end of the buffer
            self.pos = end
            return value

    def skip(self) -> None:
        """Consume a value not wanted, an array element by element (an unwanted array may be long)."""
        if self.peek() == "[":
            for _ in self.array():
                pass
        else:
            self.value()

    def array(self) -> Iterator[Any]:
        self.take("[", "Expecting value")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.take(",]", "Expecting ',' delimiter") == "]":
                return

    def members(self) -> Iterator[str]:
        """Keys of the object at the cursor; the caller consumes each member's value before the next key."""
        self.take("{", "Expecting value")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise self.error("Expecting property name enclosed in double quotes")
            key = self.value()
            self.take(":", "Expecting ':' delimiter")
            yield key
            if self.take(",}", "Expecting ',' delimiter") == "}":
                return

    def end(self) -> None:
        if self.peek():
            raise self.error("Extra data")

    def first_line_is_a_record(self) -> bool:
        """NDJSON: the first line alone is a complete object and something follows it. Leaves the cursor."""
        while "\n" not in self.buf[self.pos :] and len(self.buf) - self.pos < NDJSON_PROBE_CHARS and self.more():
            pass
        cut = self.buf.find("\n", self.pos)
        if cut < 0 or cut - self.pos > NDJSON_PROBE_CHARS:
            return False
        try:
            value, end = _DECODER.raw_decode(self.buf[: cut + 1], self.pos)
        except json.JSONDecodeError:
            return False
        if not isinstance(value, dict) or self.buf[end : cut + 1].strip(_WS):
            return False
        after = cut + 1 - self.pos  # from the cursor, which `more()` may move
        while True:
            if self.buf[self.pos + after :].strip(_WS):
                return True
            after = len(self.buf) - self.pos
            if not self.more():
                return False

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) of each line from the cursor on (the first from the cursor, the rest whole)."""
        line = self.line + self.buf.count("\n", 0, self.pos)
        while True:
            cut = self.buf.find("\n", self.pos)
            if cut < 0:
                if self.more():
                    continue
                if self.pos < len(self.buf):
                    yield line, self.buf[self.pos :]
                return
            yield line, self.buf[self.pos : cut]
            line += 1
            self.pos = cut + 1


def records(stream: IO[str], path: Sequence[str] = ()) -> Generator[tuple[int, Any], None, str | None]:
    """(source row, decoded record) of each record, in document order; `path` names the objects' members
    leading to the array. Raises JsonSyntaxError on invalid JSON, RecordsNotFound when the records cannot be
    located, RecursionError when nested too deeply. When the records were found by looking (no `path`, a
    top-level object), the generator returns the member's name."""
    t = _Text(stream)
    first = t.peek()
    if first == "[" and path:
        t.skip()
        t.end()
        raise RecordsNotFound(f"an array, not an object holding {'.'.join(path)!r}")
    if first == "[":
        yield from enumerate(t.array(), start=1)
        t.end()
        return None
    if first == "{" and t.first_line_is_a_record():
        for line, text in t.lines():
            if not text.strip(_WS):
                continue
            try:
                value, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip(_WS)))
            except json.JSONDecodeError as exc:
                raise JsonSyntaxError(exc.msg, line, exc.colno) from None
            extra = len(text) - len(text[end:].lstrip(_WS))
            if extra < len(text):
                raise JsonSyntaxError("Extra data", line, extra + 1)
            yield line, value
        return None
    if first != "{":
        t.value()
        t.end()
        raise RecordsNotFound("the document is neither an array nor an object")
    if not path:
        member = _locate(t)
        stream.seek(0)
        yield from _in_object(_Text(stream), [member])
        return member
    found = yield from _in_object(t, list(path))
    t.end()
    if found is None:
        raise RecordsNotFound(f"no array of records at {'.'.join(path)!r}")
    return None


def _locate(t: _Text) -> str:
    """The one member of the top-level object that is an array holding an object (read through once)."""
    found = []
    for key in t.members():
        if t.peek() != "[":
            t.skip()
            continue
        holds_object = False
        for item in t.array():
            holds_object = holds_object or isinstance(item, dict)
        if holds_object:
            found.append(key)
    t.end()
    if len(found) != 1:
        raise RecordsNotFound(f"{len(found)} arrays of records")
    return found[0]


def _in_object(t: _Text, path: list[str]) -> Generator[tuple[int, Any], None, str | None]:
    """Records of the array at `path` inside the object at the cursor; returns the member's name, or None when
    the path leads nowhere (a name may be "")."""
    found = None
    for key in t.members():
        if key != path[0]:
            t.skip()
        elif found is not None:
            raise RecordsNotFound(f"{key!r} appears twice")
        elif len(path) == 1:
            if t.peek() != "[":
                t.value()
                raise RecordsNotFound(f"{key!r} is not an array")
            found = key
            yield from enumerate(t.array(), start=1)
        elif t.peek() == "{":
            found = key if (yield from _in_object(t, path[1:])) is not None else None
        else:
            t.skip()
    return found
