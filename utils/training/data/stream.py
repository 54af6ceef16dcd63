"""Corpora larger than memory: read, tokenize and use a chunk at a time.

A cursor (file index, position) marks where a chunk starts; the position is a byte
offset for .txt/.jsonl (gzip too) and a row index for .csv/.parquet (readers.py).
Chunks are read with one `CorpusReader` that continues where the last chunk stopped,
so each file is opened and parsed once per pass, whatever its format. Memory stays
bounded by one chunk whatever the corpus size:

- `ChunkedTokenWriter` appends chunks to a packed `TokenFile` (train from the growing
  file with a `RandomBatchSampler` over its memmap);
- `ChunkStream` is a BatchSource that trains from a stream of chunks; its state_dict
  holds the cursor of the current chunk, so a resumed run re-reads that chunk and
  continues with the batch an uninterrupted run would have drawn.

prepare_data(mode="chunk") (pipeline.py) builds a ChunkStream for training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from utils.training.data.readers import DataError, FileReader, open_reader
from utils.training.data.sources import list_data_files, spool_hf_to_text
from utils.training.data.token_file import TokenFile, TokenFileWriter, dtype_for_vocab
from utils.training.data.tokenizer import encode_documents, text_bytes, tokenizer_id

if TYPE_CHECKING:
    import torch

__all__ = ["PIECE_BYTES", "ChunkStream", "ChunkedTokenWriter", "CorpusReader", "Cursor", "read_chunk",
           "read_documents", "sample_documents", "spool_hf_to_text"]

PIECE_BYTES = 1 << 20  # text tokenized per encode_batch call while filling a chunk
Cursor = tuple[int, int]  # (file index, position within that file: see readers.py)


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


def _corpus_reader(files: CorpusReader | Sequence[Path], text_column: str | None, doc_split: str) -> CorpusReader:
    return files if isinstance(files, CorpusReader) else CorpusReader(files, text_column, doc_split)


def read_documents(files: CorpusReader | Sequence[Path], cursor: Cursor, max_bytes: int,
                   text_column: str | None = None, doc_split: str = "paragraph") -> tuple[list[str], Cursor | None]:
    """About max_bytes of documents from `cursor`, and the cursor after them (None at the end).
    Given a CorpusReader, it continues that reader (text_column and doc_split are its own)."""
    reader = _corpus_reader(files, text_column, doc_split)
    reader.seek(cursor)
    docs = reader.read(max_bytes)
    after = reader.cursor
    if reader is not files:
        reader.close()
    return docs, after


def sample_documents(files: CorpusReader | Sequence[Path], cursor: Cursor, max_bytes: int,
                     text_column: str | None = None, doc_split: str = "paragraph") -> list[str]:
    """About max_bytes of documents from `cursor` (e.g. to train a BPE tokenizer on)."""
    return read_documents(files, cursor, max_bytes, text_column, doc_split)[0]


def read_chunk(files: CorpusReader | Sequence[Path], cursor: Cursor, tokenizer, tokens_per_chunk: int,
               text_column: str | None = None, doc_split: str = "paragraph") -> tuple[np.ndarray, dict, Cursor | None]:
    """Tokenize from `cursor` until >= tokens_per_chunk tokens (or the corpus ends).

    Returns (tokens: 1-D uint16/uint32 array, {"documents", "bytes"}, next cursor or None at
    the end). Pass the same CorpusReader for consecutive chunks to read each file once.
    """
    reader = _corpus_reader(files, text_column, doc_split)
    reader.seek(cursor)
    dtype = dtype_for_vocab(len(tokenizer))
    parts: list[np.ndarray] = []
    n_tok = n_docs = n_bytes = 0
    while n_tok < tokens_per_chunk and reader.cursor is not None:
        want = max(4096, min(PIECE_BYTES, 3 * (tokens_per_chunk - n_tok)))  # ~3 bytes/token: little overshoot
        docs = reader.read(want)
        if docs:
            ids = encode_documents(tokenizer, docs).astype(dtype)
            parts.append(ids)
            n_tok += len(ids)
            n_docs += len(docs)
            n_bytes += text_bytes(docs)
    after = reader.cursor
    if reader is not files:
        reader.close()
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return tokens, {"documents": n_docs, "bytes": n_bytes}, after


class ChunkedTokenWriter:
    """Tokenize a large corpus into one packed TokenFile, a chunk at a time (constant memory)."""

    def __init__(self, path, tokenizer, corpus_hash: str = "", **extra):
        self.tokenizer = tokenizer
        self.writer = TokenFileWriter(path, len(tokenizer), tokenizer_id(tokenizer), corpus_hash, **extra)

    def write(self, documents: Sequence[str]) -> int:
        ids = encode_documents(self.tokenizer, documents)
        self.writer.append(ids, num_documents=len(documents))
        return len(ids)

    def write_files(self, files: Sequence[Path], tokens_per_chunk: int = 1 << 20, max_chunks: int | None = None,
                    text_column: str | None = None, doc_split: str = "paragraph") -> TokenFile:
        reader = CorpusReader(files, text_column, doc_split)  # one pass over the files
        cursor: Cursor | None = (0, 0)
        chunks = 0
        try:
            while cursor is not None and (max_chunks is None or chunks < max_chunks):
                tokens, info, cursor = read_chunk(reader, cursor, self.tokenizer, tokens_per_chunk)
                self.writer.append(tokens, num_documents=info["documents"])
                chunks += 1
        finally:
            reader.close()
        return self.close()

    def close(self) -> TokenFile:
        self.writer.close()
        return TokenFile.open(self.writer.bin_path)


class ChunkStream:
    """BatchSource (utils.training.contracts) over a stream of tokenized chunks.

    Chunk k (tokens_per_chunk tokens from its cursor) serves `batches_per_chunk` batches per
    rank; batch j of chunk k is drawn by a generator seeded by (seed, rank, k, j). After
    `max_chunks` chunks or the end of the files the stream wraps to `start` (next epoch).
    `reader` continues from chunk to chunk; a resume or a new epoch seeks it once.
    """

    kind = "chunks"

    def __init__(self, path_or_files, tokenizer, batch_size: int, block_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, tokens_per_chunk: int = 1 << 20,
                 max_chunks: int | None = None, batches_per_chunk: int | None = None,
                 start: Cursor = (0, 0), text_column: str | None = None, doc_split: str = "paragraph"):
        self.files = list_data_files(path_or_files) if isinstance(path_or_files, (str, Path)) else list(path_or_files)
        self.tokenizer = tokenizer
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.tokens_per_chunk, self.max_chunks = tokens_per_chunk, max_chunks
        self.batches_per_chunk = batches_per_chunk or max(1, tokens_per_chunk // (batch_size * block_size * world_size))
        self.start, self.text_column, self.doc_split = tuple(start), text_column, doc_split
        self.chunk_index, self.batch_in_chunk, self.epoch = 0, 0, 0
        self.chunk_cursor: Cursor = self.start
        self._chunk: np.ndarray | None = None
        self._next_cursor: Cursor | None = None
        self._eval: np.ndarray | None = None
        self.reader = CorpusReader(self.files, text_column, doc_split, cursor=self.start)

    def _load_chunk(self) -> None:
        tokens, _, self._next_cursor = read_chunk(self.reader, self.chunk_cursor, self.tokenizer,
                                                  self.tokens_per_chunk)
        if len(tokens) < self.block_size + 1:
            if self.chunk_cursor == self.start:
                raise DataError(f"{self.files[0]}: corpus has {len(tokens)} tokens after the cursor, "
                                f"fewer than one block + 1 ({self.block_size + 1})")
            self._advance_epoch()  # a short tail chunk: start the next epoch instead
            return self._load_chunk()
        self._chunk = tokens

    def _advance_epoch(self) -> None:
        self.epoch += 1
        self.chunk_index, self.chunk_cursor = 0, self.start

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        from utils.training.data.sampler import gather_windows  # torch: imported when batches are drawn

        if self._chunk is None:
            self._load_chunk()
        rng = np.random.default_rng([self.seed, self.rank, self.epoch, self.chunk_index, self.batch_in_chunk])
        starts = rng.integers(0, len(self._chunk) - self.block_size, size=self.batch_size)
        batch = gather_windows(self._chunk, starts, self.block_size)
        self.batch_in_chunk += 1
        if self.batch_in_chunk >= self.batches_per_chunk:
            self.batch_in_chunk = 0
            self.chunk_index += 1
            last = self._next_cursor is None or (self.max_chunks is not None and self.chunk_index >= self.max_chunks)
            if last:
                self._advance_epoch()
            else:
                self.chunk_cursor = self._next_cursor
            self._chunk = None
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "epoch": self.epoch, "chunk_index": self.chunk_index,
                "batch_in_chunk": self.batch_in_chunk, "chunk_cursor": list(self.chunk_cursor),
                "seed": self.seed, "rank": self.rank}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"epoch", "chunk_index", "batch_in_chunk", "chunk_cursor"} - set(state)
        if missing:
            raise ValueError(f"chunk stream state lacks {sorted(missing)} (keys: {sorted(state)})")
        self.epoch, self.chunk_index = int(state["epoch"]), int(state["chunk_index"])
        self.batch_in_chunk, self.chunk_cursor = int(state["batch_in_chunk"]), tuple(state["chunk_cursor"])
        self._chunk = None  # re-read and re-tokenize the chunk at the saved cursor

    def eval_batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed batches from the first chunk at `start` (same every call)."""
        from utils.training.data.sampler import RandomBatchSampler

        if self._eval is None:
            tokens, _, _ = read_chunk(self.files, self.start, self.tokenizer, self.tokens_per_chunk,
                                      self.text_column, self.doc_split)
            self._eval = tokens
        sampler = RandomBatchSampler(self._eval, self.batch_size, self.block_size, self.seed, self.rank, self.world_size)
        return sampler.eval_batches(n)
