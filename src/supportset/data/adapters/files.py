"""Reading the annotation files of the public datasets safely, with errors that name them."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import pickle
import re
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from supportset.data.manifest import ManifestError, safe_video_path

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".flv", ".3gp")


def annotation(root: Path, relative: str, source: str = "") -> Path:
    """`root/relative`, which must exist: the error names the file, the dataset folder and,
    where given, the `source` to get the file from."""
    path = safe_video_path(root, relative)
    if not path.is_file():
        where = f"; get it from {source}" if source else ""
        raise ManifestError(
            f"{path}: annotation file not found in the dataset folder {root}{where}"
        )
    return path


def read_text(path: Path) -> str:
    """UTF-8 text (a BOM is dropped); a decoding error names the byte and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}: not UTF-8 text: byte {data[error.start : error.start + 1]!r} on line "
            f"{line}; convert the file to UTF-8"
        ) from error


def read_json(path: Path) -> Any:
    """The JSON value of `path`; an object with a repeated key (which json would silently
    collapse to its last value, losing annotations) is an error naming the key."""
    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: malformed JSON: {error}") from error
    except ManifestError as error:  # a repeated key
        raise ManifestError(f"{path}: {error}") from error


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines."""
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV with a header that holds at least `columns` (see `read_csv_lines`)."""
    return [row for _, row in read_csv_lines(path, columns)]


def read_csv_lines(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every non-blank row of a CSV with a header that holds at least
    `columns`. A row with fewer fields than the header, or more (an unquoted comma, which
    would cut a caption short), and a NUL byte are errors naming the line."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = next(reader, [])
    missing = [column for column in columns if column not in header]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
    rows, end = [], reader.line_num
    for fields in reader:
        line, end = end + 1, reader.line_num
        if not fields:
            continue
        if len(fields) != len(header):
            hint = "; quote a field that holds a comma" if len(fields) > len(header) else ""
            raise ManifestError(
                f"{path}: line {line} has {len(fields)} fields where the header has "
                f"{len(header)} ({', '.join(header)}){hint}"
            )
        if any("\0" in field for field in fields):
            raise ManifestError(f"{path}: line {line} holds a NUL byte")
        rows.append((line, dict(zip(header, fields, strict=True))))
    return rows


def _number_dtype(name: str, *_: Any) -> np.dtype:
    """A NumPy dtype of numbers (bool, int, float): what a pickled NumPy scalar names."""
    dtype = np.dtype(name)
    if dtype.kind not in "biuf":
        raise ManifestError(f"refusing NumPy dtype {dtype} in a pickle (numbers only)")
    return dtype


def _number_scalar(dtype: Any, data: bytes) -> int | float | bool:
    """A pickled NumPy number (e.g. numpy.int64), as the Python number it holds."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise ManifestError("refusing a NumPy scalar that is not a number in a pickle")
    return np.frombuffer(data, dtype, count=1)[0].item()


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Bytes as protocol-2 pickles write them (`_codecs.encode(text, "latin1")`)."""
    if encoding != "latin1":
        raise ManifestError(f"refusing _codecs.encode with {encoding!r} in a pickle")
    return text.encode("latin1")


# The only globals a plain-data pickle may name: NumPy numbers (an index saved as
# numpy.int64) and the bytes of their data in protocol 2. None of them can run code.
PLAIN_GLOBALS = {
    ("numpy", "dtype"): _number_dtype,
    ("numpy.core.multiarray", "scalar"): _number_scalar,
    ("numpy._core.multiarray", "scalar"): _number_scalar,
    ("_codecs", "encode"): _latin1_bytes,
}


class _PlainDataUnpickler(pickle.Unpickler):
    """Refuses every global but PLAIN_GLOBALS: only dicts, lists, tuples, strings and
    numbers load, so a pickle cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in PLAIN_GLOBALS:
            return PLAIN_GLOBALS[module, name]
        raise ManifestError(f"refusing to load {module}.{name} from a pickle (plain data only)")


def read_plain_pickle(path: Path) -> Any:
    with path.open("rb") as handle:
        try:
            return _PlainDataUnpickler(handle).load()
        except ManifestError as error:
            raise ManifestError(f"{path}: {error}") from error
        except (pickle.UnpicklingError, EOFError) as error:
            raise ManifestError(f"{path}: malformed pickle: {error}") from error


def caption_text(path: Path, video_id: str, words: Any) -> str:
    """A caption of a pickled captions dict (Collaborative Experts' raw-captions.pkl): a
    string, or a list of words joined by spaces."""
    if isinstance(words, str):
        return words.strip()
    if isinstance(words, list | tuple) and all(isinstance(word, str) for word in words):
        return " ".join(words).strip()
    raise ManifestError(
        f"{path}: a caption of '{video_id}' is neither a string nor a list of words"
    )


class VideoFolder:
    """The video files under one folder (recursively), found by name without suffix."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_stem: dict[str, Path] = {}
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    self._by_stem.setdefault(path.stem, path)

    def path(self, stem: str, *other_names: str) -> str:
        """The file of video `stem`, or else of the first of `other_names` (names the same
        video has in other distributions); where there is none, the path it is expected at
        (`stem` with the first suffix), which `prepare` then counts as missing."""
        for name in (stem, *other_names):
            if "/" in name or name in ("", ".", ".."):
                raise ManifestError(
                    f"video id '{name}' would escape the dataset folder {self.folder}"
                )
        found = next((self._by_stem[n] for n in (stem, *other_names) if n in self._by_stem), None)
        return str(found if found is not None else self.folder / f"{stem}{VIDEO_SUFFIXES[0]}")


def held_out(video_ids: list[str], share: int = 10, most: int = 1000) -> set[str]:
    """A fixed validation set carved from `video_ids`: 1/`share` of them, at most `most`,
    at least one; those with the smallest SHA-1 digests, so it never depends on order."""
    count = max(1, min(most, len(video_ids) // share))
    return set(sorted(video_ids, key=lambda v: hashlib.sha1(v.encode()).hexdigest())[:count])


def check_lists(lists: dict[str, list[str]], known: Collection[str], source: str) -> None:
    """Split lists (name -> ids): none repeats an id or names one `source` lacks, and no id
    is in two lists."""
    for name, ids in lists.items():
        repeated = sorted(video_id for video_id, count in Counter(ids).items() if count > 1)
        if repeated:
            raise ManifestError(f"{name} repeats {', '.join(repeated[:10])}")
        unknown = sorted(set(ids) - set(known))
        if unknown:
            raise ManifestError(
                f"{name} names videos missing from {source}: {', '.join(unknown[:10])}"
            )
    names = list(lists)
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            both = sorted(set(lists[first]) & set(lists[second]))
            if both:
                raise ManifestError(f"in both {first} and {second}: {', '.join(both[:10])}")


JSON_CHUNK_BYTES = 16 * 2**20  # what iter_json_object reads from the file at a time
JSON_VALUE_CHARS = 64 * 2**20  # the longest single value it decodes (characters)
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
NUMBER_TAIL = 2  # the most characters a cut number hides from raw_decode: "e+" of "1e+5"
_UTF8_BOM = codecs.BOM_UTF8


def iter_json_object(
    path: Path, chunk_bytes: int = JSON_CHUNK_BYTES, value_chars: int = JSON_VALUE_CHARS
) -> Iterator[tuple[str, Any]]:
    """(key, value) of each member of the one JSON object in `path`, in file order, read
    `chunk_bytes` (at least 4) at a time and decoded value by value at C speed
    (json.JSONDecoder.raw_decode).
    Memory holds a chunk, the value being decoded (a value longer than `value_chars` is an
    error naming its key) and the keys seen so far. As `read_json`: a repeated key, at the
    top or inside a value, is an error naming it; malformed JSON is an error naming the file
    and the character (and line) where it breaks; UTF-8 with or without a BOM is read, and a
    byte that is not UTF-8 is an error naming its byte offset."""
    with path.open("rb") as handle:
        yield from _ObjectReader(path, handle, chunk_bytes, value_chars).members()


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """An object_pairs_hook: the object, or an error naming its repeated keys."""
    members = dict(pairs)
    if len(members) < len(pairs):
        repeated = sorted(key for key, count in Counter(k for k, _ in pairs).items() if count > 1)
        raise ManifestError(f"repeated key(s) {', '.join(repeated[:10])}")
    return members


class _ObjectReader:
    """The members of a JSON object, parsed from a window of its text that slides along
    the file: `text` starts at character `start` (line `line`) of the file's text, and
    `position` is the parser's place in it."""

    def __init__(
        self, path: Path, handle: io.BufferedReader, chunk_bytes: int, value_chars: int
    ) -> None:
        self.path, self.handle = path, handle
        self.chunk_bytes, self.value_chars = max(chunk_bytes, 4), value_chars
        self.decoder = json.JSONDecoder(object_pairs_hook=_unique_pairs)
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.text, self.position, self.start, self.line = "", 0, 0, 1
        self.bytes_read, self.at_end = 0, False

    def members(self) -> Iterator[tuple[str, Any]]:
        self._expect("{", "an object (the file must hold one JSON object)")
        if self._next_char() == "}":
            self.position += 1
        else:
            yield from self._pairs()
        if self._next_char():
            raise self._malformed("extra data after the object")

    def _pairs(self) -> Iterator[tuple[str, Any]]:
        """The members up to and including the object's closing brace."""
        seen: set[str] = set()
        separator = ","
        while separator == ",":
            if self._next_char() != '"':
                raise self._malformed("expected a key in double quotes")
            key = self._decode("a key")
            if key in seen:
                raise ManifestError(f"{self.path}: repeated key(s) {key}")
            seen.add(key)
            self._expect(":", f"':' after key '{key}'")
            self._next_char()
            yield key, self._decode(f"the value of key '{key}'")
            separator = self._next_char()
            if separator not in (",", "}"):
                raise self._malformed(f"expected ',' or '}}' after the value of key '{key}'")
            self.position += 1

    def _next_char(self) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            self.position = _JSON_SPACE.match(self.text, self.position).end()
            if self.position < len(self.text) or not self._read_chunk():
                return self.text[self.position : self.position + 1]

    def _expect(self, char: str, what: str) -> None:
        if self._next_char() != char:
            raise self._malformed(f"expected {what}")
        self.position += 1

    def _decode(self, what: str) -> Any:
        """The JSON value at `position`, read on until it is whole: a value that fails to
        decode, or ends within NUMBER_TAIL characters of the window's end (where a number
        may go on: "45." or "45e+" decode as 45), is retried with the next chunk appended,
        until the file ends or the value outgrows `value_chars`. Only the message of a
        failure is kept: the error holds the whole window, and its traceback a cycle back to
        it, which would keep windows alive until the garbage collector's next full pass."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.position)
                if end + NUMBER_TAIL < len(self.text) or self.at_end:
                    self.position = end
                    return value
                failure = ""
            except json.JSONDecodeError as error:
                if self.at_end:
                    raise self._malformed(error.msg, error.pos) from error
                failure = error.msg
            except ManifestError as error:
                raise ManifestError(f"{self.path}: {what}: {error}") from error
            if len(self.text) - self.position > self.value_chars:
                broken = f" or malformed ({failure})" if failure else ""
                raise ManifestError(
                    f"{self.path}: {what}, at character {self.start + self.position}, is "
                    f"longer than {self.value_chars} characters{broken}"
                )
            self._read_chunk()

    def _read_chunk(self) -> bool:
        """Append the next chunk of text, dropping what was parsed; False at the end."""
        if self.at_end:
            return False
        self.line += self.text.count("\n", 0, self.position)
        self.text, self.start = self.text[self.position :], self.start + self.position
        self.position = 0
        data = self.handle.read(self.chunk_bytes)
        if self.bytes_read == 0 and data.startswith(_UTF8_BOM):
            data, self.bytes_read = data[len(_UTF8_BOM) :], len(_UTF8_BOM)
        self.at_end = not data
        self.text += self._decode_bytes(data)
        return True

    def _decode_bytes(self, data: bytes) -> str:
        pending = self.utf8.getstate()[0]
        try:
            return self.utf8.decode(data, final=self.at_end)
        except UnicodeDecodeError as error:
            offset = self.bytes_read - len(pending) + error.start
            raise ManifestError(
                f"{self.path}: not UTF-8 text: byte {error.object[error.start : error.start + 1]!r}"
                f" at byte offset {offset}; convert the file to UTF-8"
            ) from error
        finally:
            self.bytes_read += len(data)

    def _malformed(self, message: str, position: int | None = None) -> ManifestError:
        position = self.position if position is None else position
        line = self.line + self.text.count("\n", 0, position)
        return ManifestError(
            f"{self.path}: malformed JSON: {message} at character {self.start + position} "
            f"(line {line})"
        )
