"""File readers: one per format, the only code that turns a data file into documents.

Each reader starts at a *position* and yields whole documents, keeping the position of
the next unread one, so a caller can stop after any amount of text and later continue
(the same reader object: no re-reading) or resume (a new reader at a saved position):

    .txt   position = byte offset (of the decompressed stream for .gz); doc_split says
           what a document is: a line, a blank-line separated paragraph, or the file
    .jsonl position = byte offset; one JSON object per line, text from `text_column`
    .csv   position = data row index (blank rows not counted); text from `text_column`
    .parquet position = row index; whole row groups before it are skipped unread

`stream.CorpusReader` chains the readers of a list of files with a cursor (file index,
position). The packed pipeline reads every file to its end; chunk mode reads a piece at
a time with the same readers, so both modes see the same documents and the same errors.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate, compress
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
TEXT_COLUMN_GUESSES = ("text", "content", "document", "body", "sentence", "description", "article")
DOC_SPLITS = ("auto", "paragraph", "line", "file")
BLOCK_BYTES = 1 << 18  # text files are read and decoded a block of whole lines at a time (256 KiB)


class DataError(ValueError):
    """Bad input data: the message names the file or field and what is allowed. The one
    error of the data package (sources, pipeline and chunk mode raise it too)."""


def file_suffix(path: Path) -> str:
    """The format of a data file: '.csv' for data.csv and data.csv.gz."""
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1].lower() if suffixes else ""


def pick_text_column(where: str | Path, columns: list[str], text_column: str | None) -> str:
    """`text_column` if `columns` has it, else the first of TEXT_COLUMN_GUESSES present;
    DataError naming `where` and the columns otherwise."""
    if text_column is not None:
        if text_column not in columns:
            raise DataError(f"{where}: no text column {text_column!r}; columns are {columns}")
        return text_column
    for guess in TEXT_COLUMN_GUESSES:
        if guess in columns:
            return guess
    raise DataError(
        f"{where}: cannot tell which column holds the text; columns are {columns}. Set text_column to one of them."
    )


def open_binary(path: Path):
    """The file's bytes, decompressed for .gz (seek works on both; on .gz it decompresses)."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _line_blocks(path: Path, f, offset: int) -> Iterator[tuple[str, list[str], list[int]]]:
    """From byte `offset`: (decoded block, its lines without "\n", byte offset after
    each line), BLOCK_BYTES of whole lines at a time, so the per-line work is a few C calls.
    Raises DataError for NUL bytes (binary), bad UTF-8 and damaged gzip, naming the offset."""
    where = "decompressed byte" if path.suffix == ".gz" else "byte"
    while True:
        try:
            data = f.read(BLOCK_BYTES)
            if data and not data.endswith(b"\n"):
                data += f.readline()  # whole lines only
        except (OSError, EOFError) as e:  # BadGzipFile is an OSError
            raise DataError(f"{path}: not a valid gzip file ({e})") from e
        if not data:
            return
        nul = data.find(b"\x00")
        if nul >= 0:
            raise DataError(f"{path}: looks binary (NUL at {where} offset {offset + nul}); expected UTF-8 text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: not valid UTF-8 at {where} offset {offset + e.start} ({data[e.start:e.start + 4]!r}); "
                "re-save the file as UTF-8"
            ) from e
        lines = text.split("\n")
        if not lines[-1]:
            lines.pop()  # the block ended with "\n"
        # byte lengths: the str lengths when the block is ASCII, else the raw lines' lengths
        lengths = map(len, lines if text.isascii() else data.split(b"\n"))
        ends = list(accumulate(map((1).__add__, lengths), initial=offset))[1:len(lines) + 1]
        ends[-1] = offset + len(data)  # the last line of a file may lack its "\n"
        offset += len(data)
        yield text, lines, ends  # "\n" is never inside a UTF-8 sequence: lines and raw lines match


_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")  # a whitespace-only line after the first one of a block


def detect_doc_split(path: Path) -> str:
    """doc_split 'auto' for a .txt file: 'paragraph' when blank lines separate two or more
    paragraphs, else 'line' (a file of one document per line would otherwise be one
    document). Stops reading at the second paragraph."""
    paragraphs, in_paragraph = 0, False
    with open_binary(path) as f:
        for text, lines, _ in _line_blocks(path, f, 0):
            if lines[0].strip() and not _BLANK_LINE.search(text):  # the usual case: no blank line
                paragraphs += 0 if in_paragraph else 1
                if paragraphs > 1:
                    return "paragraph"
                in_paragraph = True
                continue
            for line in lines:
                if line.strip():
                    if not in_paragraph:
                        paragraphs += 1
                        if paragraphs > 1:
                            return "paragraph"
                    in_paragraph = True
                else:
                    in_paragraph = False
    return "line"


Block = tuple[list[str], list]  # documents, and the position after each (None: no cut after it)


class FileReader:
    """Documents of one file from `position`. Subclasses define `_blocks`: a generator of
    (documents, position after each) for a block of the file; a position of None marks a
    document that may not end a read (its unit goes on: a line that held two documents).
    One block is read ahead, so `eof` is known as soon as the last document is taken."""

    def __init__(self, path: Path, position: int = 0, text_column: str | None = None,
                 doc_split: str = "paragraph"):
        self.path, self.position, self.start = Path(path), int(position), int(position)
        self.text_column, self.doc_split = text_column, doc_split
        self.units_read = 0  # lines/rows parsed, skipped ones included (tests count them)
        self.last_read_bytes = 0  # UTF-8 bytes of the documents the last `read` returned
        self._source = self._blocks()
        self._docs: list[str] = []
        self._ends: list = []
        self._sizes: list[int] = []  # cumulative UTF-8 bytes of self._docs
        self._i = 0  # next document of the block
        self._any_text = False
        self._fetch()

    def _blocks(self) -> Iterator[Block]:
        raise NotImplementedError

    def _fetch(self) -> None:
        """The next block with documents (none left: eof)."""
        self._docs, self._ends, self._i = [], [], 0
        for docs, ends in self._source:
            if docs:
                self._docs, self._ends, self._any_text = docs, ends, True
                self._sizes = list(accumulate(map(len, map(str.encode, docs))))
                return
        if self.start == 0 and not self._any_text:
            raise DataError(f"{self.path}: contains no text documents")

    @property
    def eof(self) -> bool:
        return self._i >= len(self._docs)

    def read(self, max_bytes: int | None = None) -> list[str]:
        """Whole documents until about `max_bytes` UTF-8 bytes (all when None)."""
        out: list[str] = []
        size = 0
        while self._i < len(self._docs) and (max_bytes is None or size < max_bytes):
            i, n = self._i, len(self._docs)
            base = self._sizes[i - 1] if i else 0
            j = n if max_bytes is None else min(n, bisect_left(self._sizes, base + max_bytes - size, lo=i) + 1)
            while self._ends[j - 1] is None:  # never stop inside a unit
                j += 1
            out.extend(self._docs[i:j])
            size += self._sizes[j - 1] - base
            self.position, self._i = self._ends[j - 1], j
            if j >= n:
                self._fetch()
        self.last_read_bytes = size
        return out

    def close(self) -> None:
        self._source.close()  # runs the generator's `with`: the file is closed


class TxtReader(FileReader):
    """doc_split 'line': one document per line; 'paragraph': blank-line separated, lines
    kept as written inside; 'file': the whole file; 'auto': `detect_doc_split`."""

    def __init__(self, path: Path, position: int = 0, text_column: str | None = None,
                 doc_split: str = "paragraph"):
        if doc_split not in DOC_SPLITS:
            raise DataError(f"doc_split must be one of {DOC_SPLITS}, got {doc_split!r}")
        if doc_split == "auto":
            doc_split = detect_doc_split(Path(path))
        super().__init__(path, position, text_column, doc_split)

    def _blocks(self) -> Iterator[Block]:
        seen_text, para, end = False, [], self.start
        with open_binary(self.path) as f:
            f.seek(self.position)
            for text, lines, ends in _line_blocks(self.path, f, self.position):
                self.units_read += len(lines)
                seen_text = seen_text or not text.isspace()
                if self.doc_split == "line":
                    yield self._line_docs(text, lines, ends)
                    continue
                docs, doc_ends = [], []
                for line, end in zip(lines, ends):
                    if line.strip():
                        para.append(line)
                    elif para and self.doc_split == "paragraph":  # a blank line closes a paragraph
                        docs.append("\n".join(para).strip())
                        doc_ends.append(end)
                        para = []
                    elif para:  # 'file': blank lines inside the text are kept
                        para.append(line)
                yield docs, doc_ends
            if para:
                yield ["\n".join(para).strip()], [end]
        if self.start == 0 and not seen_text:
            raise DataError(f"{self.path}: file is empty (no text)")

    @staticmethod
    def _line_docs(text: str, lines: list[str], ends: list[int]) -> Block:
        r"""A document per line as str.splitlines sees lines ("\r", "\x0c", "\u2028"... too)."""
        parts = text.splitlines()
        if len(parts) == len(lines):  # no break but "\n" and "\r\n": the lines are the parts
            stripped = [p.strip() for p in parts]
            return list(filter(None, stripped)), list(compress(ends, stripped))
        docs, doc_ends = [], []  # rare: a line that holds several documents
        for line, end in zip(lines, ends):
            parts = [p.strip() for p in line.splitlines() if p.strip()]
            docs.extend(parts)
            doc_ends.extend([None] * (len(parts) - 1) + [end] if parts else [])
        return docs, doc_ends


class JsonlReader(FileReader):
    """One JSON object per line; the text column is picked from the first row."""

    def _blocks(self) -> Iterator[Block]:
        col, seen_text, lineno = None, False, 0
        with open_binary(self.path) as f:
            f.seek(self.position)
            start = self.position
            for _, lines, ends in _line_blocks(self.path, f, self.position):
                self.units_read += len(lines)
                docs, doc_ends = [], []
                for line, end in zip(lines, ends):
                    lineno += 1
                    where = f"line {lineno}" if self.start == 0 else f"the line at byte offset {start}"
                    start = end
                    if not line.strip():
                        continue
                    seen_text = True
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{self.path}: {where} is not valid JSON ({e.msg})") from e
                    if not isinstance(row, dict):
                        raise DataError(f"{self.path}: {where} is not a JSON object")
                    col = col or pick_text_column(self.path, list(row), self.text_column)
                    value = row.get(col)
                    if isinstance(value, str) and value.strip():
                        docs.append(value.strip())
                        doc_ends.append(end)
                yield docs, doc_ends
        if self.start == 0 and not seen_text:
            raise DataError(f"{self.path}: file is empty (no text)")


ROWS_PER_BLOCK = 1024


class CsvReader(FileReader):
    """Rows after the header; a resumed reader parses (but does not keep) the rows
    before its position: csv records may span lines, so rows have no byte offsets."""

    def _blocks(self) -> Iterator[Block]:
        with open_binary(self.path) as f:
            lines = (line + "\n" for _, block, _ in _line_blocks(self.path, f, 0) for line in block)
            rows = csv.reader(lines)
            header = next(rows, None)
            if header is None or not "".join(header).strip():
                raise DataError(f"{self.path}: file is empty (no text)")
            col = header.index(pick_text_column(self.path, header, self.text_column))
            row_i, docs, doc_ends = 0, [], []
            try:
                for row in rows:
                    if not row:
                        continue  # a blank line: not a row (csv.DictReader skips it too)
                    row_i += 1
                    self.units_read += 1
                    if row_i <= self.start:
                        continue
                    text = row[col].strip() if col < len(row) else ""
                    if text:
                        docs.append(text)
                        doc_ends.append(row_i)
                        if len(docs) >= ROWS_PER_BLOCK:
                            yield docs, doc_ends
                            docs, doc_ends = [], []
            except csv.Error as e:
                raise DataError(f"{self.path}: not valid CSV after data row {row_i} ({e})") from e
            yield docs, doc_ends


class ParquetReader(FileReader):
    """Rows of the text column, ROWS_PER_BLOCK at a time; row groups wholly before the
    position are skipped without reading them."""

    def _blocks(self) -> Iterator[Block]:
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("reading .parquet needs pyarrow: pip install pyarrow") from e
        try:
            pf = pq.ParquetFile(self.path)
        except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
            raise DataError(f"{self.path}: not a readable parquet file ({e})") from e
        col = pick_text_column(self.path, pf.schema_arrow.names, self.text_column)
        row, groups = 0, []
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if row + n <= self.start and not groups:
                row += n  # wholly before the position
            else:
                groups.append(g)
        try:
            for batch in pf.iter_batches(batch_size=ROWS_PER_BLOCK, row_groups=groups, columns=[col]):
                values = batch.column(0).to_pylist()
                self.units_read += len(values)
                skip = max(0, min(len(values), self.start - row))
                stripped = [v.strip() if isinstance(v, str) else "" for v in values[skip:]]
                ends = range(row + skip + 1, row + len(values) + 1)
                row += len(values)
                yield list(filter(None, stripped)), list(compress(ends, stripped))
        except (OSError, ValueError) as e:
            raise DataError(f"{self.path}: not a readable parquet file ({e})") from e
        finally:
            pf.close()


READERS: dict[str, type[FileReader]] = {".txt": TxtReader, ".jsonl": JsonlReader, ".csv": CsvReader,
                                        ".parquet": ParquetReader}


def open_reader(path: str | os.PathLike, position: int = 0, text_column: str | None = None,
                doc_split: str = "paragraph") -> FileReader:
    """The reader of `path`'s format (see READERS), at `position`."""
    path = Path(path)
    reader = READERS.get(file_suffix(path))
    if reader is None:
        raise DataError(f"{path}: unsupported file type; use one of {TEXT_SUFFIXES} (optionally .gz)")
    return reader(path, position, text_column, doc_split)
