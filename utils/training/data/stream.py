"""Corpora larger than memory: read, tokenize and use a chunk at a time.

A cursor (file index, offset) marks where a chunk starts; offset is a byte offset for
.txt/.jsonl (gzip too) and a row index for .csv/.parquet. Memory stays bounded by one
chunk whatever the corpus size:

- `ChunkedTokenWriter` appends chunks to a packed `TokenFile` (train from the growing
  file with a `RandomBatchSampler` over its memmap);
- `ChunkStream` is a BatchSource that trains from a stream of chunks; its state_dict
  holds the cursor of the current chunk, so a resumed run re-reads that chunk and
  continues with the batch an uninterrupted run would have drawn.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from utils.training.data.pipeline import DataError, _pick_column, _suffix, list_data_files
from utils.training.data.token_file import TokenFile, TokenFileWriter, dtype_for_vocab
from utils.training.data.tokenizer import encode_documents, tokenizer_id

PIECE_BYTES = 1 << 20  # text tokenized per encode_batch call while filling a chunk
Cursor = tuple[int, int]  # (file index, byte offset or row index)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _decode_line(path: Path, raw: bytes, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 at byte offset {offset + e.start}") from e


def _read_piece(path: Path, offset: int, max_bytes: int, text_column: str | None,
                doc_split: str) -> tuple[list[str], int, bool]:
    """Documents from `path` starting at `offset` until ~max_bytes of text.
    Returns (documents, next offset, reached end of file)."""
    kind = _suffix(path)
    docs: list[str] = []
    if kind in (".txt", ".jsonl"):
        with _open_binary(path) as f:
            f.seek(offset)
            pos, size, para, col = offset, 0, [], text_column
            while size < max_bytes:
                raw = f.readline()
                if not raw:
                    break
                line = _decode_line(path, raw, pos).strip()
                pos += len(raw)
                size += len(raw)
                if kind == ".jsonl":
                    if line:
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise DataError(f"{path}: invalid JSON at byte offset {pos - len(raw)} ({e.msg})") from e
                        col = col or _pick_column(path, list(row), text_column)
                        if isinstance(row.get(col), str) and row[col].strip():
                            docs.append(row[col].strip())
                elif doc_split == "line":
                    if line:
                        docs.append(line)
                elif line:  # paragraph mode: a blank line closes a document
                    para.append(line)
                elif para:
                    docs.append("\n".join(para))
                    para = []
            else:
                # stopped on size: finish the open paragraph so no document is cut
                while para:
                    raw = f.readline()
                    line = _decode_line(path, raw, pos).strip() if raw else ""
                    pos += len(raw)
                    if line:
                        para.append(line)
                    else:
                        docs.append("\n".join(para))
                        para = []
                        if not raw:
                            break
            if para:
                docs.append("\n".join(para))
            eof = not f.peek(1) if hasattr(f, "peek") else f.read(1) == b""
            return docs, pos, eof
    if kind == ".csv":
        with _open_binary(path) as fb:
            reader = csv.DictReader(io.TextIOWrapper(fb, encoding="utf-8", newline=""))
            col = _pick_column(path, list(reader.fieldnames or []), text_column)
            row_i, size = 0, 0
            for row_i, row in enumerate(reader):
                if row_i < offset:
                    continue  # rows have no byte offsets through csv; skip to the cursor
                text = (row.get(col) or "").strip()
                if text:
                    docs.append(text)
                    size += len(text)
                if size >= max_bytes:
                    return docs, row_i + 1, False
            return docs, row_i + 1, True
    if kind == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        col = _pick_column(path, pf.schema_arrow.names, text_column)
        row, size = 0, 0
        for batch in pf.iter_batches(batch_size=1024, columns=[col]):
            values = batch.column(0).to_pylist()
            if row + len(values) <= offset:
                row += len(values)
                continue
            for i, text in enumerate(values):
                if row + i < offset:
                    continue
                if isinstance(text, str) and text.strip():
                    docs.append(text.strip())
                    size += len(text)
                if size >= max_bytes:
                    return docs, row + i + 1, row + i + 1 >= pf.metadata.num_rows
            row += len(values)
        return docs, row, True
    raise DataError(f"{path}: unsupported in chunk mode; use .txt/.jsonl/.csv/.parquet (optionally .gz)")


def read_documents(files: Sequence[Path], cursor: Cursor, max_bytes: int, text_column: str | None = None,
                   doc_split: str = "paragraph") -> tuple[list[str], Cursor | None]:
    """About max_bytes of documents from `cursor`, and the cursor after them (None at the end)."""
    docs, size, (file_i, offset) = [], 0, cursor
    while size < max_bytes and file_i < len(files):
        piece, offset, eof = _read_piece(files[file_i], offset, max_bytes - size, text_column, doc_split)
        docs.extend(piece)
        size += sum(len(d) for d in piece)
        if eof:
            file_i, offset = file_i + 1, 0
    return docs, ((file_i, offset) if file_i < len(files) else None)


def sample_documents(files: Sequence[Path], cursor: Cursor, max_bytes: int, text_column: str | None = None,
                     doc_split: str = "paragraph") -> list[str]:
    """About max_bytes of documents from `cursor` (e.g. to train a BPE tokenizer on)."""
    return read_documents(files, cursor, max_bytes, text_column, doc_split)[0]


def read_chunk(files: Sequence[Path], cursor: Cursor, tokenizer, tokens_per_chunk: int,
               text_column: str | None = None, doc_split: str = "paragraph") -> tuple[np.ndarray, dict, Cursor | None]:
    """Tokenize from `cursor` until >= tokens_per_chunk tokens (or the corpus ends).

    Returns (tokens: 1-D uint16/uint32 array, {"documents", "bytes"}, next cursor or None at the end).
    """
    dtype = dtype_for_vocab(len(tokenizer))
    parts: list[np.ndarray] = []
    n_tok = n_docs = n_bytes = 0
    file_i, offset = cursor
    while n_tok < tokens_per_chunk and file_i < len(files):
        want = max(4096, min(PIECE_BYTES, 3 * (tokens_per_chunk - n_tok)))  # ~3 bytes/token: little overshoot
        docs, offset, eof = _read_piece(files[file_i], offset, want, text_column, doc_split)
        if docs:
            ids = encode_documents(tokenizer, docs).astype(dtype)
            parts.append(ids)
            n_tok += len(ids)
            n_docs += len(docs)
            n_bytes += sum(len(d.encode("utf-8")) for d in docs) + len(docs)  # eos counts as one byte
        if eof:
            file_i, offset = file_i + 1, 0
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return tokens, {"documents": n_docs, "bytes": n_bytes}, ((file_i, offset) if file_i < len(files) else None)


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
        cursor: Cursor | None = (0, 0)
        chunks = 0
        while cursor is not None and (max_chunks is None or chunks < max_chunks):
            tokens, info, cursor = read_chunk(files, cursor, self.tokenizer, tokens_per_chunk, text_column, doc_split)
            self.writer.append(tokens, num_documents=info["documents"])
            chunks += 1
        return self.close()

    def close(self) -> TokenFile:
        self.writer.close()
        return TokenFile.open(self.writer.bin_path)


class ChunkStream:
    """BatchSource over a stream of tokenized chunks.

    Chunk k (tokens_per_chunk tokens from its cursor) serves `batches_per_chunk` batches per
    rank; batch j of chunk k is drawn by a generator seeded by (seed, rank, k, j). After
    `max_chunks` chunks or the end of the files the stream wraps to `start` (next epoch).
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
        self._eval: list | None = None

    def _load_chunk(self) -> None:
        tokens, _, self._next_cursor = read_chunk(self.files, self.chunk_cursor, self.tokenizer,
                                                  self.tokens_per_chunk, self.text_column, self.doc_split)
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

    def next_batch(self):
        from utils.training.data.sampler import _gather

        if self._chunk is None:
            self._load_chunk()
        rng = np.random.default_rng([self.seed, self.rank, self.epoch, self.chunk_index, self.batch_in_chunk])
        starts = rng.integers(0, len(self._chunk) - self.block_size, size=self.batch_size)
        batch = _gather(self._chunk, starts, self.block_size)
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

    def state_dict(self) -> dict:
        return {"kind": self.kind, "epoch": self.epoch, "chunk_index": self.chunk_index,
                "batch_in_chunk": self.batch_in_chunk, "chunk_cursor": list(self.chunk_cursor),
                "seed": self.seed, "rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        missing = {"epoch", "chunk_index", "batch_in_chunk", "chunk_cursor"} - set(state)
        if missing:
            raise ValueError(f"chunk stream state lacks {sorted(missing)} (keys: {sorted(state)})")
        self.epoch, self.chunk_index = int(state["epoch"]), int(state["chunk_index"])
        self.batch_in_chunk, self.chunk_cursor = int(state["batch_in_chunk"]), tuple(state["chunk_cursor"])
        self._chunk = None  # re-read and re-tokenize the chunk at the saved cursor

    def eval_batches(self, n: int) -> Iterator:
        """Fixed batches from the first chunk at `start` (same every call)."""
        from utils.training.data.sampler import RandomBatchSampler

        if self._eval is None:
            tokens, _, _ = read_chunk(self.files, self.start, self.tokenizer, self.tokens_per_chunk,
                                      self.text_column, self.doc_split)
            self._eval = tokens
        sampler = RandomBatchSampler(self._eval, self.batch_size, self.block_size, self.seed, self.rank, self.world_size)
        return sampler.eval_batches(n)


def spool_hf_to_text(name: str, config: str | None, split: str, text_column: str | None, out_dir: Path, *,
                     max_documents: int | None = None, check_hub: bool = True, **load_kwargs) -> Path:
    """Stream a Hugging Face dataset row by row (`streaming=True`) into a text file, one
    document per line, under out_dir: constant memory whatever the dataset size, once per
    (name, config, split, column, cap). Chunk mode then reads that file with its cursor, so a
    resumed run continues where it stopped without streaming the dataset again.
    `load_kwargs` go to `datasets.load_dataset` (e.g. data_files for a local json dataset)."""
    import hashlib

    from utils.training.data.pipeline import _hub_reachable, _pick_column, hf_offline_message

    if check_hub and not _hub_reachable():
        raise DataError(hf_offline_message(name))
    try:
        import datasets
    except ImportError as e:
        raise ImportError("data_source='hf' needs the datasets package: pip install datasets") from e
    key = json.dumps([name, config, split, text_column, max_documents, sorted(map(str, load_kwargs.items()))])
    path = Path(out_dir) / f"hf-{hashlib.sha256(key.encode()).hexdigest()[:16]}.txt"
    if path.exists():
        return path
    try:
        ds = datasets.load_dataset(name, config, split=split, streaming=True, **load_kwargs)
    except (OSError, ConnectionError) as e:
        raise DataError(f"{hf_offline_message(name)} ({type(e).__name__}: {e})") from e
    except ValueError as e:  # unknown config or split
        raise DataError(f"hf dataset {name!r} config {config!r} split {split!r}: {e}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, col, n = path.with_name(path.name + ".tmp"), None, 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in ds:
            if col is None:
                col = _pick_column(Path(f"hf:{name}"), list(row.keys()), text_column)
            text = " ".join(str(row[col] or "").split())  # one document per line
            if text:
                f.write(text + "\n")
                n += 1
                if max_documents is not None and n >= max_documents:
                    break
    if n == 0:
        tmp.unlink()
        raise DataError(f"hf dataset {name!r} split {split!r} has no text in column {col!r}")
    tmp.replace(path)  # complete or absent: a killed spool is redone, not half-used
    return path


def prepare_chunks(config, datasets_dir: Path, *, rank: int = 0, world_size: int = 1, corpus=None,
                   tokens_per_chunk: int = 1 << 20, max_chunks: int | None = None,
                   bpe_sample_bytes: int = 8 << 20, **source_options):
    """prepare_data(mode="chunk"): the corpus's first tokens_per_chunk x 4 bytes of documents
    are held out as val, training streams the rest.

    File sources stream from their files; builtin/synthetic/in-memory corpora are first
    written once to datasets/text/<hash>.txt (one document per line). The BPE tokenizer
    trains on up to `bpe_sample_bytes` of text after the held-out region (training text only).
    """
    from utils.training.data.pipeline import PreparedData, _cfg, _check_block, _source_options, load_source
    from utils.training.data.sampler import RandomBatchSampler
    from utils.training.data.tokenizer import corpus_hash, load_tokenizer

    kind = _cfg(config, "data_source", "builtin")
    B, T, seed = int(_cfg(config, "batch_size")), int(_cfg(config, "block_size")), int(_cfg(config, "random_seed", 0))
    text_column = _cfg(config, "text_column") or None  # "" in a config means: detect it
    doc_split = source_options.pop("doc_split", "paragraph")
    synthetic = False
    if corpus is None and kind in ("local", "drive", "upload"):
        opts = _source_options(config, kind, source_options)
        path = opts.get("path")
        if kind == "drive":
            from utils.training.data.pipeline import DRIVE_ROOT

            path = Path(opts.get("drive_root") or DRIVE_ROOT) / path
        if not path:
            raise DataError(f"data_source={kind!r} needs data_path (a file or folder)")
        files, name = list_data_files(path), Path(path).name
    elif corpus is None and kind == "hf":
        hf_name, hf_config = _cfg(config, "hf_dataset"), _cfg(config, "hf_config") or None
        hf_opts = {k: v for k, v in source_options.items() if k in ("split", "max_documents", "check_hub")}
        load_kwargs = {k: v for k, v in source_options.items() if k == "data_files"}
        files = [spool_hf_to_text(hf_name, hf_config, hf_opts.pop("split", "train"), text_column,
                                  datasets_dir / "text", **hf_opts, **load_kwargs)]
        name, doc_split, text_column = f"{hf_name}/{hf_config}" if hf_config else hf_name, "line", None
    else:
        corpus = corpus or load_source(kind, **_source_options(config, kind, source_options))
        synthetic, name, kind, doc_split = corpus.synthetic, corpus.name, corpus.source, "line"
        text_path = datasets_dir / "text" / f"{corpus_hash(corpus.documents)[:16]}.txt"
        if not text_path.exists():
            text_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = text_path.with_name(text_path.name + ".tmp")
            tmp.write_text("".join(d.replace("\n", " ") + "\n" for d in corpus.documents), encoding="utf-8")
            tmp.replace(text_path)
        files = [text_path]
    where = f"{kind} corpus {name!r}"
    spec = _cfg(config, "tokenizer", "bpe")
    # Validation is the corpus's first ~tokens_per_chunk tokens' worth of text, held out by
    # bytes (4 per token, generous for BPE): training chunks and the BPE sample both start
    # after it, so the tokenizer never sees validation text.
    val_docs, start = read_documents(files, (0, 0), tokens_per_chunk * 4, text_column, doc_split)
    if start is None:
        raise DataError(f"{where} fits in its validation region ({tokens_per_chunk * 4} bytes): use mode='packed' "
                        "or a smaller tokens_per_chunk")
    sample = sample_documents(files, start, bpe_sample_bytes, text_column, doc_split) if spec == "bpe" else None
    tokenizer = load_tokenizer(spec, texts=sample, vocab_size=int(_cfg(config, "vocab_size", 8192)),
                               cache_dir=datasets_dir / "tokenizers")
    del sample
    val_tokens = encode_documents(tokenizer, val_docs).astype(dtype_for_vocab(len(tokenizer)))
    val_bytes = sum(len(d.encode("utf-8")) for d in val_docs) + len(val_docs)  # eos counts as one byte
    _check_block(len(val_tokens), T, "val", where)
    train = ChunkStream(files, tokenizer, B, T, seed, rank, world_size, tokens_per_chunk=tokens_per_chunk,
                        max_chunks=max_chunks, start=start, text_column=text_column, doc_split=doc_split)
    val = RandomBatchSampler(val_tokens, B, T, seed, rank, world_size)
    bpt = val_bytes / max(1, len(val_tokens))
    stats = {"source": kind, "name": name, "documents": None, "bytes": sum(f.stat().st_size for f in files),
             "tokens": None, "bytes_per_token": bpt, "train_tokens": None, "val_tokens": len(val_tokens),
             "synthetic": synthetic, "tokenizer": tokenizer_id(tokenizer), "vocab_size": len(tokenizer),
             "mode": "chunk", "tokens_per_chunk": tokens_per_chunk, "max_chunks": max_chunks}
    return PreparedData(train, val, tokenizer, len(tokenizer), bpt, stats, val_docs[:8])
