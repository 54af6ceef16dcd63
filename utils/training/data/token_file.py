"""Packed token files: NAME.bin (raw uint16/uint32 tokens) + NAME.json (a small header).

The dtype follows from the vocabulary (uint16 while every id fits, else uint32) and is
checked on write and on read: reading uint32 tokens as uint16 would train on silent
garbage. Both files are written with utils.training.io's atomic write (the header last),
so an interrupted write never leaves a cache entry that looks valid. Token files are a
cache (the corpus can be tokenized again): atomic, not fsynced.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from utils.training.io import atomic_open, atomic_write_json

FORMAT_VERSION = 1


class TokenFileError(ValueError):
    """A token file that is missing, inconsistent, or not what the caller expects."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    if vocab_size <= 0:
        raise TokenFileError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class TokenFile:
    """A read-only memory-mapped token array and its header.

    header: format, dtype, vocab_size, tokenizer (id), corpus_hash, num_tokens,
    num_documents, max_token, plus any `extra` fields given at write time.
    """

    def __init__(self, path: str | os.PathLike, header: dict, tokens: np.ndarray):
        self.path, self.header, self.tokens = Path(path), header, tokens

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def vocab_size(self) -> int:
        return int(self.header["vocab_size"])

    @staticmethod
    def paths(path: str | os.PathLike) -> tuple[Path, Path]:
        p = Path(path)
        stem = p.with_suffix("") if p.suffix in (".bin", ".json") else p
        return stem.with_suffix(".bin"), stem.with_suffix(".json")

    @classmethod
    def exists(cls, path) -> bool:
        b, j = cls.paths(path)
        return b.exists() and j.exists()

    @classmethod
    def write(cls, path, tokens: np.ndarray, vocab_size: int, tokenizer: str, corpus_hash: str,
              num_documents: int | None = None, **extra) -> TokenFile:
        """Write a whole array at once (see `TokenFileWriter` for appending chunks)."""
        with TokenFileWriter(path, vocab_size, tokenizer, corpus_hash, **extra) as w:
            w.append(tokens, num_documents=num_documents or 0)
        return cls.open(path, vocab_size=vocab_size)

    @classmethod
    def open(cls, path, vocab_size: int | None = None, tokenizer: str | None = None,
             corpus_hash: str | None = None) -> TokenFile:
        """Memory-map a token file; every expectation given is checked against the header."""
        bin_path, json_path = cls.paths(path)
        if not (bin_path.exists() and json_path.exists()):
            raise TokenFileError(f"token file {bin_path} (with header {json_path.name}) does not exist")
        try:
            header = json.loads(json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TokenFileError(f"token file header {json_path} is not valid JSON: {e}") from e
        for key in ("dtype", "vocab_size", "num_tokens", "tokenizer"):
            if key not in header:
                raise TokenFileError(f"token file header {json_path} has no {key!r} field")
        dtype = np.dtype(header["dtype"])
        expected = dtype_for_vocab(int(header["vocab_size"]))
        if dtype != expected:
            raise TokenFileError(
                f"{bin_path}: header dtype {dtype} does not fit vocab_size {header['vocab_size']} "
                f"(needs {expected}); delete the file to re-tokenize"
            )
        if vocab_size is not None and int(header["vocab_size"]) != vocab_size:
            raise TokenFileError(
                f"{bin_path}: written for vocab_size {header['vocab_size']}, but the tokenizer has {vocab_size} "
                f"(dtype {dtype} vs {dtype_for_vocab(vocab_size)}); delete the file to re-tokenize"
            )
        if tokenizer is not None and header["tokenizer"] != tokenizer:
            raise TokenFileError(f"{bin_path}: written by tokenizer {header['tokenizer']!r}, expected {tokenizer!r}")
        if corpus_hash is not None and header.get("corpus_hash") != corpus_hash:
            raise TokenFileError(f"{bin_path}: corpus hash {header.get('corpus_hash')} != expected {corpus_hash}")
        size = bin_path.stat().st_size
        if size != int(header["num_tokens"]) * dtype.itemsize:
            raise TokenFileError(
                f"{bin_path}: {size} bytes, but the header says {header['num_tokens']} tokens of {dtype} "
                f"({int(header['num_tokens']) * dtype.itemsize} bytes): wrong dtype or truncated file"
            )
        if size == 0:
            tokens = np.zeros(0, dtype=dtype)
        else:
            tokens = np.memmap(bin_path, dtype=dtype, mode="r")
        return cls(bin_path, header, tokens)


class TokenFileWriter:
    """Append token chunks to a packed file; the header is written on `close()`.

    Memory: one chunk at a time. Each chunk is range-checked against vocab_size.
    """

    def __init__(self, path, vocab_size: int, tokenizer: str, corpus_hash: str, **extra):
        self.bin_path, self.json_path = TokenFile.paths(path)
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype_for_vocab(vocab_size)
        self.vocab_size, self.tokenizer, self.corpus_hash, self.extra = vocab_size, tokenizer, corpus_hash, extra
        self.num_tokens = self.num_documents = self.max_token = 0
        self._stack = ExitStack()  # holds the atomic write of the .bin until close or abort
        self._f = self._stack.enter_context(atomic_open(self.bin_path, "wb", durable=False))

    def append(self, tokens: np.ndarray, num_documents: int = 0) -> None:
        tokens = np.asarray(tokens)
        if tokens.size:
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi >= self.vocab_size:
                self.abort()
                raise TokenFileError(
                    f"{self.bin_path}: token id out of range [{lo}, {hi}] for vocab_size {self.vocab_size}"
                )
            self.max_token = max(self.max_token, hi)
        self._f.write(tokens.astype(self.dtype, copy=False).tobytes())
        self.num_tokens += int(tokens.size)
        self.num_documents += num_documents

    def close(self) -> None:
        header = {
            "format": FORMAT_VERSION, "dtype": self.dtype.name, "vocab_size": self.vocab_size,
            "tokenizer": self.tokenizer, "corpus_hash": self.corpus_hash, "num_tokens": self.num_tokens,
            "num_documents": self.num_documents, "max_token": self.max_token, **self.extra,
        }
        self.json_path.unlink(missing_ok=True)  # an old header must never describe the new data
        self._stack.close()  # the .bin in place
        atomic_write_json(self.json_path, header, durable=False, indent=1)  # the header last: it marks it complete

    def abort(self) -> None:
        """Drop what was written; the final names are left as they were."""
        aborted = TokenFileError(f"{self.bin_path}: write aborted")
        self._stack.__exit__(TokenFileError, aborted, None)  # atomic_open removes its temp file

    def __enter__(self) -> TokenFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
