"""Text sources: where the documents come from, and the train/val split.

Every source returns a `TextCorpus` (a list of documents plus a name). The built-in
corpus is the default everywhere because it needs no network: the ICD-10-CM
descriptions that the `simple-icd-10-cm` package ships.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import os
import random
import re
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file or field and what is allowed."""


@dataclass
class TextCorpus:
    documents: list[str]
    name: str
    source: str
    synthetic: bool = False
    info: dict = field(default_factory=dict)

    @property
    def num_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in self.documents)


def _cache_dir() -> Path:
    """Per-user cache for derived data ($SLM_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("SLM_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(base) / "slm-notebooks"


def _parse_builtin() -> list[str]:
    try:
        with warnings.catch_warnings():  # it loads its data at import with deprecated importlib calls
            warnings.simplefilter("ignore", DeprecationWarning)
            import simple_icd_10_cm as icd
    except ImportError as e:  # pragma: no cover - installed with the project
        raise ImportError(
            "the builtin corpus needs the simple-icd-10-cm package: pip install simple-icd-10-cm"
        ) from e
    seen: set[str] = set()
    docs: list[str] = []
    for code in icd.get_all_codes(True):
        text = icd.get_description(code).strip()
        if text and text not in seen:
            seen.add(text)
            docs.append(text)
    return docs


@functools.lru_cache(maxsize=1)
def _builtin_tuple() -> tuple[str, ...]:
    """Parsing the package's XML takes seconds; the parsed list is kept as gzipped JSON
    in the user cache, keyed by the package version, and read back in ~0.1 s."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        key = version("simple-icd-10-cm")
    except PackageNotFoundError:
        key = "unknown"
    path = _cache_dir() / f"icd10cm-{key}.json.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            docs = json.load(f)
        if isinstance(docs, list) and docs and all(isinstance(d, str) for d in docs[:10]):
            return tuple(docs)
    except (OSError, EOFError, json.JSONDecodeError):
        pass  # no cache yet, or a damaged one: parse again and rewrite it below
    docs = _parse_builtin()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            json.dump(docs, f)
        os.replace(tmp, path)
    except OSError as e:  # a read-only home folder only costs the parse next time
        warnings.warn(f"could not cache the builtin corpus at {path}: {e}", stacklevel=2)
    return tuple(docs)


def builtin_corpus() -> list[str]:
    """The ICD-10-CM descriptions, one document per code, in the code list's order.

    Order: the package's code list (chapters, blocks, categories, subcategories, tabular
    order). Exact duplicate descriptions are dropped (first occurrence kept: 98,505 codes
    give ~97.7k documents, ~7 MB UTF-8) so that no text is in both train and val.
    Parsing the package's XML takes a few seconds once per process; later calls are cached.
    """
    return list(_builtin_tuple())


def split_documents(docs: list[str], validation_split: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic document-level split: a seeded shuffle of the indices, the first
    `validation_split` share goes to val (at least one document when the share is > 0).
    Both halves keep the original document order."""
    if not 0.0 <= validation_split < 1.0:
        raise DataError(f"validation_split must be in [0, 1), got {validation_split}")
    n = len(docs)
    if n == 0:
        raise DataError("cannot split an empty corpus (0 documents)")
    n_val = int(round(n * validation_split))
    if validation_split > 0:
        n_val = max(1, n_val)
    if n_val >= n:
        raise DataError(
            f"validation_split={validation_split} leaves no training documents out of {n}; "
            "use a smaller split or a larger corpus"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


# ---------------------------------------------------------------------------------------
# Sources. Each returns a TextCorpus; bad input raises DataError naming the file.

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
TEXT_COLUMN_GUESSES = ("text", "content", "document", "body", "sentence", "description", "article")
DRIVE_ROOT = os.environ.get("SLM_DRIVE_DIR", "/content/drive/MyDrive")


def load_builtin() -> TextCorpus:
    return TextCorpus(builtin_corpus(), name="icd10cm", source="builtin",
                      info={"description": "ICD-10-CM code descriptions (simple-icd-10-cm)"})


def _suffix(path: Path) -> str:
    """'.csv' for data.csv and data.csv.gz."""
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1].lower() if suffixes else ""


def _read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError) as e:  # BadGzipFile is an OSError
            raise DataError(f"{path}: not a valid gzip file ({e})") from e
    return path.read_bytes()


def _decode(path: Path, raw: bytes) -> str:
    if not raw.strip():
        raise DataError(f"{path}: file is empty (no text)")
    nul = raw.find(b"\x00", 0, 1 << 20)
    if nul >= 0:
        where = "decompressed byte" if path.suffix == ".gz" else "byte"
        raise DataError(f"{path}: looks binary (NUL at {where} offset {nul}); expected UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "decompressed byte" if path.suffix == ".gz" else "byte"
        raise DataError(
            f"{path}: not valid UTF-8 at {where} offset {e.start} ({raw[e.start:e.start + 4]!r}); "
            "re-save the file as UTF-8"
        ) from e


def _pick_column(path: Path, columns: list[str], text_column: str | None) -> str:
    if text_column is not None:
        if text_column not in columns:
            raise DataError(f"{path}: no text column {text_column!r}; columns are {columns}")
        return text_column
    for guess in TEXT_COLUMN_GUESSES:
        if guess in columns:
            return guess
    raise DataError(
        f"{path}: cannot tell which column holds the text; columns are {columns}. Set text_column to one of them."
    )


DOC_SPLITS = ("auto", "paragraph", "line", "file")


def _split_text(text: str, doc_split: str) -> list[str]:
    if doc_split == "auto":
        doc_split = _auto_split(text)
    if doc_split == "paragraph":
        parts = re.split(r"\n\s*\n", text)
    elif doc_split == "line":
        parts = text.splitlines()
    elif doc_split == "file":
        parts = [text]
    else:
        raise DataError(f"doc_split must be one of {DOC_SPLITS}, got {doc_split!r}")
    return [p.strip() for p in parts if p.strip()]


def _auto_split(text: str) -> str:
    """'paragraph' when the text has blank-line separated paragraphs, else 'line': a
    file of one document per line (no blank lines) would otherwise be one document."""
    paragraphs = sum(1 for p in re.split(r"\n\s*\n", text) if p.strip())
    return "paragraph" if paragraphs > 1 else "line"


def _read_file(path: Path, text_column: str | None, doc_split: str) -> tuple[list[str], str | None]:
    """(documents, the split a .txt file got: doc_split, or what 'auto' chose; None for tables)."""
    kind = _suffix(path)
    how = None
    if kind == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("reading .parquet needs pyarrow: pip install pyarrow") from e
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
            raise DataError(f"{path}: not a readable parquet file ({e})") from e
        col = _pick_column(path, table.column_names, text_column)
        docs = [d.strip() for d in table.column(col).to_pylist() if isinstance(d, str) and d.strip()]
    else:
        text = _decode(path, _read_bytes(path))
        if kind == ".txt":
            how = _auto_split(text) if doc_split == "auto" else doc_split
            docs = _split_text(text, how)
        elif kind == ".jsonl":
            docs, col = [], None
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from e
                if not isinstance(row, dict):
                    raise DataError(f"{path}: line {lineno} is not a JSON object")
                col = col or _pick_column(path, list(row), text_column)
                value = row.get(col)
                if isinstance(value, str) and value.strip():
                    docs.append(value.strip())
        elif kind == ".csv":
            reader = csv.DictReader(io.StringIO(text))
            col = _pick_column(path, list(reader.fieldnames or []), text_column)
            docs = [r[col].strip() for r in reader if r.get(col) and r[col].strip()]
        else:
            raise DataError(f"{path}: unsupported file type; use one of {TEXT_SUFFIXES} (optionally .gz)")
    if not docs:
        raise DataError(f"{path}: contains no text documents")
    return docs, how


def list_data_files(path: str | os.PathLike) -> list[Path]:
    """A file, or every supported file under a folder (recursive, sorted)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path {p} does not exist")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) in TEXT_SUFFIXES and not f.name.startswith("."))
    if not files:
        raise DataError(f"folder {p} has no {'/'.join(TEXT_SUFFIXES)} files (optionally .gz)")
    return files


def load_local(path: str | os.PathLike | None, text_column: str | None = None, doc_split: str = "auto",
               source: str = "local") -> TextCorpus:
    """A file or folder of .txt/.jsonl/.csv/.parquet (.gz allowed).

    .txt: doc_split 'paragraph' (blank-line separated), 'line' (one document per line),
    'file', or 'auto' (default): paragraphs when a file has blank-line separated ones,
    else lines. info["doc_split"] says which split each .txt file got.
    .jsonl/.csv/.parquet: one document per row, from `text_column` or a detected one.
    """
    if not path:
        raise DataError(f"data_source={source!r} needs data_path (a file or folder)")
    if doc_split not in DOC_SPLITS:
        raise DataError(f"doc_split must be one of {DOC_SPLITS}, got {doc_split!r}")
    files = list_data_files(path)
    docs: list[str] = []
    used: dict[str, str] = {}
    for f in files:
        file_docs, how = _read_file(f, text_column, doc_split)
        docs.extend(file_docs)
        if how is not None:
            used.setdefault(how, str(f))  # a file of each kind, to name
    info: dict = {"files": [str(f) for f in files]}
    if used:  # one word when every .txt file got the same split
        info["doc_split"] = next(iter(used)) if len(used) == 1 else ", ".join(f"{k} ({v}...)" for k, v in used.items())
        if doc_split == "auto":
            info["doc_split"] += " (auto)"
    return TextCorpus(docs, name=Path(path).name, source=source, info=info)


def load_drive(path: str | os.PathLike | None, text_column: str | None = None, doc_split: str = "auto",
               drive_root: str | os.PathLike | None = None) -> TextCorpus:
    """`local` under the Drive workspace: relative paths are taken from the mounted Drive."""
    root = Path(drive_root or DRIVE_ROOT)
    if not root.exists():
        raise DataError(
            f"Google Drive is not mounted at {root}: in Colab run "
            "`from google.colab import drive; drive.mount('/content/drive')`, or use data_source='local'"
        )
    if not path:
        raise DataError("data_source='drive' needs data_path (relative to your Drive folder)")
    return load_local(root / path, text_column, doc_split, source="drive")


def load_upload(path: str | os.PathLike | None = None, text_column: str | None = None,
                doc_split: str = "auto", upload_dir: str | os.PathLike = "uploads") -> TextCorpus:
    """Colab: pick files in the browser (google.colab.files.upload). Elsewhere: a path."""
    try:
        from google.colab import files as colab_files
    except ImportError:
        colab_files = None
    if colab_files is None or path:
        if not path:
            raise DataError("data_source='upload' outside Colab takes a path: set data_path to your file")
        corpus = load_local(path, text_column, doc_split, source="upload")
        return corpus
    uploaded = colab_files.upload()  # {filename: bytes}
    if not uploaded:
        raise DataError("no file was uploaded")
    out = Path(upload_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in uploaded.items():
        (out / Path(name).name).write_bytes(content)
    return load_local(out, text_column, doc_split, source="upload")


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def hf_offline_message(name: str) -> str:
    return (f"cannot reach the Hugging Face Hub for dataset {name!r}. Offline, use "
            "data_source='builtin' (ICD-10-CM text, shipped) or data_source='local' with data_path")


def load_hf(name: str | None, config: str | None = None, split: str = "train", text_column: str | None = None,
            streaming: bool = False, max_documents: int | None = None) -> TextCorpus:
    """`datasets.load_dataset(name, config, split=split)`, e.g. ("wikitext", "wikitext-2-raw-v1").

    streaming=True reads rows lazily (Colab path for large sets); `max_documents` caps
    what is kept in memory. Offline it fails within seconds, naming the offline sources.
    """
    if not name:
        raise DataError("data_source='hf' needs hf_dataset (e.g. 'wikitext' with hf_config 'wikitext-2-raw-v1')")
    offline = hf_offline_message(name)
    if not _hub_reachable():
        raise DataError(offline)
    try:
        import datasets
    except ImportError as e:
        raise ImportError("data_source='hf' needs the datasets package: pip install datasets") from e
    try:
        ds = datasets.load_dataset(name, config, split=split, streaming=streaming)
    except (OSError, ConnectionError) as e:  # DatasetNotFoundError is a FileNotFoundError
        raise DataError(f"{offline} ({type(e).__name__}: {e})") from e
    except ValueError as e:  # unknown config/split
        raise DataError(f"hf dataset {name!r} config {config!r} split {split!r}: {e}") from e
    columns = list(ds.column_names or []) if ds.column_names is not None else list(next(iter(ds)).keys())
    col = _pick_column(Path(f"hf:{name}"), columns, text_column)
    rows = ds if max_documents is None else (ds.take(max_documents) if streaming else
                                             ds.select(range(min(max_documents, len(ds)))))
    docs = [t.strip() for t in rows[col]] if not streaming else [r[col].strip() for r in rows]
    docs = [d for d in docs if d]
    if not docs:
        raise DataError(f"hf dataset {name!r} column {col!r} has no text")
    return TextCorpus(docs, name=f"{name}/{config}" if config else name, source="hf",
                      info={"split": split, "text_column": col})


def load_synthetic(num_documents: int = 2000, words_per_document: int = 40, vocab_words: int = 500,
                   seed: int = 0) -> TextCorpus:
    """Random text from random pseudo-words: for tests only. Anything measured on it is
    labelled synthetic (TextCorpus.synthetic, stats['synthetic'])."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, size=rng.integers(2, 8))) for _ in range(vocab_words)]
    ids = rng.integers(0, vocab_words, size=(num_documents, words_per_document))
    docs = [" ".join(words[i] for i in row) for row in ids]
    return TextCorpus(docs, name="synthetic (random text, tests only)", source="synthetic", synthetic=True)


SOURCES = {"builtin": load_builtin, "hf": load_hf, "local": load_local, "drive": load_drive,
           "upload": load_upload, "synthetic": load_synthetic}


def load_source(kind: str, **options) -> TextCorpus:
    """kind in SOURCES; options are the loader's keyword arguments (path, text_column, ...)."""
    if kind not in SOURCES:
        raise DataError(f"data_source must be one of {sorted(SOURCES)}, got {kind!r}")
    return SOURCES[kind](**options)


# ---------------------------------------------------------------------------------------
# prepare_data: source -> split -> tokenizer -> cached token files -> batch sources

MODES = ("packed", "chunk", "sample")
ENCODE_DOCS = 20_000  # documents per encode_batch call: bounds peak memory on big corpora


@dataclass
class PreparedData:
    train: Any  # BatchSource
    val: Any  # BatchSource (eval_batches)
    tokenizer: Any  # PreTrainedTokenizerFast
    vocab_size: int  # len(tokenizer): the model's embedding size
    bytes_per_token: float  # UTF-8 bytes per token on val, for val_bpb
    stats: dict
    val_documents: list[str]


def _cfg(config, name: str, default=None):
    value = getattr(config, name, default)
    return default if value is None else value


def _source_options(config, kind: str, overrides: dict) -> dict:
    if kind == "hf":
        opts = {"name": _cfg(config, "hf_dataset"), "config": _cfg(config, "hf_config"),
                "text_column": _cfg(config, "text_column") or None}
    elif kind in ("local", "drive", "upload"):
        opts = {"path": _cfg(config, "data_path"), "text_column": _cfg(config, "text_column") or None}
    elif kind == "synthetic":
        opts = {"seed": _cfg(config, "random_seed", 0)}
    else:
        opts = {}
    opts.update(overrides)
    return opts


def _token_file(path: Path, docs: list[str], tokenizer, tok_id: str, doc_hash: str):
    """Open the cached token file for `docs`, or tokenize them into it (in slices)."""
    from utils.training.data.token_file import TokenFile, TokenFileWriter
    from utils.training.data.tokenizer import encode_documents

    vocab = len(tokenizer)
    if TokenFile.exists(path):
        return TokenFile.open(path, vocab_size=vocab, tokenizer=tok_id, corpus_hash=doc_hash), True
    with TokenFileWriter(path, vocab, tok_id, doc_hash) as w:
        for i in range(0, len(docs), ENCODE_DOCS):
            part = docs[i:i + ENCODE_DOCS]
            w.append(encode_documents(tokenizer, part), num_documents=len(part))
    return TokenFile.open(path, vocab_size=vocab, tokenizer=tok_id, corpus_hash=doc_hash), False


def _check_block(n_tokens: int, block_size: int, split: str, where: str) -> None:
    if n_tokens < block_size + 1:
        raise DataError(
            f"{where}: the {split} split has {n_tokens} tokens, fewer than one block + 1 "
            f"({block_size + 1}); use more text, a smaller block_size or a different validation_split"
        )


def prepare_data(config, workspace_dir, *, rank: int = 0, world_size: int = 1, mode: str = "packed",
                 corpus: TextCorpus | None = None, **source_options) -> PreparedData:
    """Everything the trainer needs from the data, cached under WORKSPACE/datasets/.

    mode: "packed" (documents joined by eos, random windows), "chunk" (streaming.py: a
    stream of chunks, for corpora larger than memory; options tokens_per_chunk, max_chunks),
    "sample" (one document per row, truncated/padded). The tokenizer trains on the
    training split only; token files are keyed by the split's hash and the tokenizer id.
    """
    from utils.training.data.sampler import DocumentBatchSampler, RandomBatchSampler
    from utils.training.data.tokenizer import bytes_per_token, corpus_hash, load_tokenizer, tokenizer_id

    if mode not in MODES:
        raise DataError(f"mode must be one of {MODES}, got {mode!r}")
    B, T = int(_cfg(config, "batch_size")), int(_cfg(config, "block_size"))
    seed = int(_cfg(config, "random_seed", 0))
    datasets_dir = Path(workspace_dir) / "datasets"
    if mode == "chunk":
        from utils.training.data.stream import prepare_chunks

        return prepare_chunks(config, datasets_dir, rank=rank, world_size=world_size, corpus=corpus, **source_options)
    for chunk_only in ("tokens_per_chunk", "max_chunks"):  # so callers may pass them in every mode
        source_options.pop(chunk_only, None)
    if corpus is None:
        kind = _cfg(config, "data_source", "builtin")
        corpus = load_source(kind, **_source_options(config, kind, source_options))
    where = f"{corpus.source} corpus {corpus.name!r}"
    train_docs, val_docs = split_documents(corpus.documents, float(_cfg(config, "validation_split", 0.1)), seed)
    if not val_docs:
        raise DataError(f"{where}: validation_split must be > 0 to measure val_loss")
    tokenizer = load_tokenizer(_cfg(config, "tokenizer", "bpe"), texts=train_docs,
                               vocab_size=int(_cfg(config, "vocab_size", 8192)), cache_dir=datasets_dir / "tokenizers")
    tok_id = tokenizer_id(tokenizer)
    files = {}
    cached = True
    for split, docs in (("train", train_docs), ("val", val_docs)):
        h = corpus_hash(docs)
        files[split], hit = _token_file(datasets_dir / f"{h[:16]}-{tok_id}" / split, docs, tokenizer, tok_id, h)
        cached = cached and hit
    train_tokens, val_tokens = files["train"].tokens, files["val"].tokens
    _check_block(len(train_tokens), T, "train", where)
    _check_block(len(val_tokens), T, "val", where)
    if mode == "sample":
        eos = tokenizer.eos_token_id
        train = DocumentBatchSampler(train_tokens, eos, B, T, seed, rank, world_size)
        val = DocumentBatchSampler(val_tokens, eos, B, T, seed, rank, world_size)
    else:
        train = RandomBatchSampler(train_tokens, B, T, seed, rank, world_size)
        val = RandomBatchSampler(val_tokens, B, T, seed, rank, world_size)
    bpt = bytes_per_token(val_docs, len(val_tokens))
    n_bytes = corpus.num_bytes
    stats = {
        "source": corpus.source, "name": corpus.name, "documents": len(corpus.documents), "bytes": n_bytes,
        "tokens": len(train_tokens) + len(val_tokens), "bytes_per_token": bpt,
        "train_tokens": len(train_tokens), "val_tokens": len(val_tokens), "synthetic": corpus.synthetic,
        "tokenizer": tok_id, "vocab_size": len(tokenizer), "mode": mode, "cached": cached,
        "unigram_entropy": unigram_entropy(train_tokens, len(tokenizer)),
    }
    if corpus.info.get("doc_split"):  # how .txt files became documents: said in the summary
        stats["doc_split"] = corpus.info["doc_split"]
    return PreparedData(train, val, tokenizer, len(tokenizer), bpt, stats, val_docs[:8])


def unigram_entropy(tokens, vocab_size: int) -> float:
    """Entropy of the token frequency distribution, nats/token: the cross-entropy of the
    best model that ignores context. A language model has learned something from context
    only once its val_loss is below this."""
    counts = np.bincount(np.asarray(tokens), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
