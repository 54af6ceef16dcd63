"""File readers: one per format, the only code that turns a data file into documents.

Each reader starts at a *position* and yields whole documents, keeping the position of
the next unread one, so a caller can stop after any amount of text and later continue
(the same reader object: no re-reading) or resume (a new reader at a saved position):

    .txt   position = byte offset (of the decompressed stream for .gz); doc_split says
           what a document is: a line, a blank-line separated paragraph, or the file
    .jsonl position = byte offset; one JSON object per line, text from `text_column`
    .csv   position = data row index (blank rows not counted); text from `text_column`
    .parquet position = row index; whole row groups before it are skipped unread

`CorpusReader` chains the readers of a list of files with a cursor (file index,
position). The packed pipeline reads every file to its end; chunk mode reads a piece at
a time with the same readers, so both modes see the same documents and the same errors.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

Cursor = tuple[int, int]  # (file index, position within that file)

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
TEXT_COLUMN_GUESSES = ("text", "content", "document", "body", "sentence", "description", "article")
DOC_SPLITS = ("auto", "paragraph", "line", "file")


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


def _lines(path: Path, f, offset: int) -> Iterator[tuple[str, int]]:
    """(decoded line with its line ending, byte offset after it) from `offset`. Raises
    DataError for NUL bytes (binary), bad UTF-8 and damaged gzip, naming the offset."""
    where = "decompressed byte" if path.suffix == ".gz" else "byte"
    while True:
        try:
            raw = f.readline()
        except (OSError, EOFError) as e:  # BadGzipFile is an OSError
            raise DataError(f"{path}: not a valid gzip file ({e})") from e
        if not raw:
            return
        nul = raw.find(b"\x00")
        if nul >= 0:
            raise DataError(f"{path}: looks binary (NUL at {where} offset {offset + nul}); expected UTF-8 text")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: not valid UTF-8 at {where} offset {offset + e.start} ({raw[e.start:e.start + 4]!r}); "
                "re-save the file as UTF-8"
            ) from e
        offset += len(raw)
        yield line, offset


def detect_doc_split(path: Path) -> str:
    """doc_split 'auto' for a .txt file: 'paragraph' when blank lines separate two or more
    paragraphs, else 'line' (a file of one document per line would otherwise be one
    document). Stops reading at the second paragraph."""
    paragraphs, in_paragraph = 0, False
    with open_binary(path) as f:
        for line, _ in _lines(path, f, 0):
            if line.strip():
                if not in_paragraph:
                    paragraphs += 1
                    if paragraphs > 1:
                        return "paragraph"
                in_paragraph = True
            else:
                in_paragraph = False
    return "line"


class FileReader:
    """Documents of one file from `position`. Subclasses define `_units`: a generator of
    (documents of one unit, position after it); a unit is never cut (a paragraph, a row).
    One unit is read ahead, so `eof` is known as soon as the last document is taken."""

    def __init__(self, path: Path, position: int = 0, text_column: str | None = None,
                 doc_split: str = "paragraph"):
        self.path, self.position, self.start = Path(path), int(position), int(position)
        self.text_column, self.doc_split = text_column, doc_split
        self.units_read = 0  # rows/lines/paragraphs parsed, skipped ones included (tests count them)
        self.last_read_bytes = 0  # UTF-8 bytes of the documents the last `read` returned
        self._any_text = False
        self._units_iter = self._units()
        self._next: tuple[list[str], int] | None = None
        self._advance()

    def _units(self) -> Iterator[tuple[list[str], int]]:
        raise NotImplementedError

    def _advance(self) -> None:
        self._next = next(self._units_iter, None)
        if self._next is not None:
            self._any_text = self._any_text or bool(self._next[0])
        elif self.start == 0 and not self._any_text:
            raise DataError(f"{self.path}: contains no text documents")

    @property
    def eof(self) -> bool:
        return self._next is None

    def read(self, max_bytes: int | None = None) -> list[str]:
        """Whole units until about `max_bytes` UTF-8 bytes of documents (all when None)."""
        docs: list[str] = []
        size = 0
        while self._next is not None and (max_bytes is None or size < max_bytes):
            unit, self.position = self._next
            docs.extend(unit)
            size += sum(len(d.encode("utf-8")) for d in unit)
            self._advance()
        self.last_read_bytes = size
        return docs

    def close(self) -> None:
        self._units_iter.close()  # runs the generator's `with`: the file is closed


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

    def _units(self) -> Iterator[tuple[list[str], int]]:
        seen_text = False
        with open_binary(self.path) as f:
            f.seek(self.position)
            para: list[str] = []
            for line, pos in _lines(self.path, f, self.position):
                self.units_read += 1
                blank = not line.strip()
                seen_text = seen_text or not blank
                if self.doc_split == "line":
                    docs = [p.strip() for p in line.splitlines() if p.strip()]
                    if docs:
                        yield docs, pos
                elif self.doc_split == "paragraph" and blank:
                    if para:
                        yield ["".join(para).strip()], pos
                        para = []
                elif not blank or para:
                    para.append(line)
            if para and "".join(para).strip():
                yield ["".join(para).strip()], pos
        if self.start == 0 and not seen_text:
            raise DataError(f"{self.path}: file is empty (no text)")


class JsonlReader(FileReader):
    """One JSON object per line; the text column is picked from the first row."""

    def _units(self) -> Iterator[tuple[list[str], int]]:
        col, seen_text = None, False
        with open_binary(self.path) as f:
            f.seek(self.position)
            start = self.position
            for lineno, (line, pos) in enumerate(_lines(self.path, f, self.position), 1):
                self.units_read += 1
                where = f"line {lineno}" if self.start == 0 else f"the line at byte offset {start}"
                start = pos
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
                yield ([value.strip()] if isinstance(value, str) and value.strip() else []), pos
        if self.start == 0 and not seen_text:
            raise DataError(f"{self.path}: file is empty (no text)")


class CsvReader(FileReader):
    """Rows after the header; a resumed reader parses (but does not keep) the rows
    before its position: csv records may span lines, so rows have no byte offsets."""

    def _units(self) -> Iterator[tuple[list[str], int]]:
        with open_binary(self.path) as f:
            rows = csv.reader(line for line, _ in _lines(self.path, f, 0))
            header = next(rows, None)
            if header is None or not "".join(header).strip():
                raise DataError(f"{self.path}: file is empty (no text)")
            col = header.index(pick_text_column(self.path, header, self.text_column))
            row_i = 0
            try:
                for row in rows:
                    if not row:
                        continue  # a blank line: not a row (csv.DictReader skips it too)
                    row_i += 1
                    self.units_read += 1
                    if row_i <= self.start:
                        continue
                    text = row[col].strip() if col < len(row) else ""
                    yield ([text] if text else []), row_i
            except csv.Error as e:
                raise DataError(f"{self.path}: not valid CSV after data row {row_i} ({e})") from e


class ParquetReader(FileReader):
    """Rows of the text column, a batch of 1024 at a time; row groups wholly before the
    position are skipped without reading them."""

    def _units(self) -> Iterator[tuple[list[str], int]]:
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
            for batch in pf.iter_batches(batch_size=1024, row_groups=groups, columns=[col]):
                for text in batch.column(0).to_pylist():
                    row += 1
                    self.units_read += 1
                    if row <= self.start:
                        continue
                    yield ([text.strip()] if isinstance(text, str) and text.strip() else []), row
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


def list_data_files(path: str | os.PathLike) -> list[Path]:
    """A file, or every supported file under a folder (recursive, sorted; hidden ones skipped)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path {p} does not exist")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*")
                   if f.is_file() and file_suffix(f) in TEXT_SUFFIXES and not f.name.startswith("."))
    if not files:
        raise DataError(f"folder {p} has no {'/'.join(TEXT_SUFFIXES)} files (optionally .gz)")
    return files


class CorpusReader:
    """The documents of `files` in order from `cursor`, each file read once: consecutive
    `read` calls continue the open reader, `seek` to another cursor opens a new one.

    `cursor` is None once every file is read. `opens` and `units_read` count the files
    opened and the units parsed (so a test can tell linear reading from re-reading)."""

    def __init__(self, files: Sequence[Path], text_column: str | None = None, doc_split: str = "paragraph",
                 cursor: Cursor = (0, 0)):
        self.files = [Path(f) for f in files]
        self.text_column, self.doc_split = text_column, doc_split
        self.opens = self._closed_units = 0
        self._file_i, self._position = int(cursor[0]), int(cursor[1])
        self._reader: FileReader | None = None

    @property
    def cursor(self) -> Cursor | None:
        if self._file_i >= len(self.files):
            return None
        return (self._file_i, self._reader.position if self._reader else self._position)

    @property
    def units_read(self) -> int:
        return self._closed_units + (self._reader.units_read if self._reader else 0)

    def seek(self, cursor: Cursor) -> None:
        """Continue from `cursor` (nothing to do when it is where the last read stopped)."""
        if tuple(cursor) == self.cursor:
            return
        self._close_file()
        self._file_i, self._position = int(cursor[0]), int(cursor[1])

    def read(self, max_bytes: int | None = None) -> list[str]:
        """Whole documents until about `max_bytes` UTF-8 bytes (all when None), across files."""
        docs: list[str] = []
        size = 0
        while self._file_i < len(self.files) and (max_bytes is None or size < max_bytes):
            if self._reader is None:
                self._reader = open_reader(self.files[self._file_i], self._position, self.text_column,
                                           self.doc_split)
                self.opens += 1
            piece = self._reader.read(None if max_bytes is None else max_bytes - size)
            docs.extend(piece)
            size += self._reader.last_read_bytes
            if self._reader.eof:
                self._close_file()
                self._file_i, self._position = self._file_i + 1, 0
        return docs

    def _close_file(self) -> None:
        if self._reader is not None:
            self._position = self._reader.position
            self._closed_units += self._reader.units_read
            self._reader.close()
            self._reader = None

    def close(self) -> None:
        self._close_file()

