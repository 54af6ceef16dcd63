"""Where text comes from: the built-in corpus, local files (also on Drive or uploaded),
the Hugging Face Hub, and random text for tests.

Every source returns a `TextCorpus` (a list of documents plus a name). The built-in
corpus is the default everywhere because it needs no network: the ICD-10-CM
descriptions that the `simple-icd-10-cm` package ships. Files are read by the one
reader of their format (readers.py); bad input raises DataError naming the file.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.training.data.readers import (
    DOC_SPLITS,
    TEXT_COLUMN_GUESSES,
    TEXT_SUFFIXES,
    DataError,
    file_suffix,
    open_reader,
    pick_text_column,
)
from utils.training.io import atomic_open
from utils.training.registries import DATA_SOURCES

__all__ = [
    "DOC_SPLITS", "DRIVE_ROOT", "SOURCES", "TEXT_COLUMN_GUESSES", "TEXT_SUFFIXES", "DataError", "TextCorpus",
    "builtin_corpus", "data_files", "hf_offline_message", "hub_reachable", "list_data_files", "load_builtin",
    "load_drive", "load_hf", "load_local", "load_source", "load_synthetic", "load_upload", "open_hf_dataset",
    "source_options", "spool_hf_to_text",
]

DRIVE_ROOT = os.environ.get("SLM_DRIVE_DIR", "/content/drive/MyDrive")


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


# ---------------------------------------------------------------------------------------
# builtin: ICD-10-CM


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
        with atomic_open(path, "wb", durable=False) as raw, gzip.open(raw, "wt", encoding="utf-8") as f:
            json.dump(docs, f)  # a cache: atomic, but cheap to redo after a power cut
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


def load_builtin() -> TextCorpus:
    return TextCorpus(builtin_corpus(), name="icd10cm", source="builtin",
                      info={"description": "ICD-10-CM code descriptions (simple-icd-10-cm)"})


# ---------------------------------------------------------------------------------------
# files: local, Drive, upload


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


def data_files(source: str, path: str | os.PathLike | None, drive_root: str | os.PathLike | None = None) -> list[Path]:
    """The files of a file source ('local', 'drive', 'upload' with a path); a Drive path
    is relative to the mounted Drive folder (`drive_root`, default DRIVE_ROOT)."""
    if source == "drive":
        root = Path(drive_root or DRIVE_ROOT)
        if not root.exists():
            raise DataError(
                f"Google Drive is not mounted at {root}: in Colab run "
                "`from google.colab import drive; drive.mount('/content/drive')`, or use data_source='local'"
            )
        if not path:
            raise DataError("data_source='drive' needs data_path (relative to your Drive folder)")
        path = root / path
    if not path:
        raise DataError(f"data_source={source!r} needs data_path (a file or folder)")
    return list_data_files(path)


def load_local(path: str | os.PathLike | None, text_column: str | None = None, doc_split: str = "auto",
               source: str = "local", drive_root: str | os.PathLike | None = None) -> TextCorpus:
    """A file or folder of .txt/.jsonl/.csv/.parquet (.gz allowed).

    .txt: doc_split 'paragraph' (blank-line separated), 'line' (one document per line),
    'file', or 'auto' (default): paragraphs when a file has blank-line separated ones,
    else lines. info["doc_split"] says which split each .txt file got.
    .jsonl/.csv/.parquet: one document per row, from `text_column` or a detected one.
    """
    if doc_split not in DOC_SPLITS:
        raise DataError(f"doc_split must be one of {DOC_SPLITS}, got {doc_split!r}")
    files = data_files(source, path, drive_root)
    docs: list[str] = []
    used: dict[str, str] = {}
    for f in files:
        reader = open_reader(f, 0, text_column, doc_split)
        try:
            docs.extend(reader.read())
        finally:
            reader.close()
        if file_suffix(f) == ".txt":
            used.setdefault(reader.doc_split, str(f))  # a file of each kind, to name
    info: dict = {"files": [str(f) for f in files]}
    if used:  # one word when every .txt file got the same split
        info["doc_split"] = next(iter(used)) if len(used) == 1 else ", ".join(f"{k} ({v}...)" for k, v in used.items())
        if doc_split == "auto":
            info["doc_split"] += " (auto)"
    name = Path(path).name if path else ""
    return TextCorpus(docs, name=name, source=source, info=info)


def load_drive(path: str | os.PathLike | None, text_column: str | None = None, doc_split: str = "auto",
               drive_root: str | os.PathLike | None = None) -> TextCorpus:
    """`local` under the Drive workspace: relative paths are taken from the mounted Drive."""
    return load_local(path, text_column, doc_split, source="drive", drive_root=drive_root)


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
        return load_local(path, text_column, doc_split, source="upload")
    uploaded = colab_files.upload()  # {filename: bytes}
    if not uploaded:
        raise DataError("no file was uploaded")
    out = Path(upload_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in uploaded.items():
        (out / Path(name).name).write_bytes(content)
    return load_local(out, text_column, doc_split, source="upload")


# ---------------------------------------------------------------------------------------
# the Hugging Face Hub


def hub_reachable(timeout: float = 3.0) -> bool:
    """False at once when HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set, else whether
    huggingface.co:443 answers within `timeout` seconds (so offline fails fast)."""
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


def open_hf_dataset(name: str | None, config: str | None, split: str, *, streaming: bool,
                    check_hub: bool = True, **load_kwargs):
    """`datasets.load_dataset(name, config, split=split, streaming=streaming, **load_kwargs)`
    with every failure as a DataError (or ImportError without the package) that says what
    to use offline."""
    if not name:
        raise DataError("data_source='hf' needs hf_dataset (e.g. 'wikitext' with hf_config 'wikitext-2-raw-v1')")
    if check_hub and not hub_reachable():
        raise DataError(hf_offline_message(name))
    try:
        import datasets
    except ImportError as e:
        raise ImportError("data_source='hf' needs the datasets package: pip install datasets") from e
    try:
        return datasets.load_dataset(name, config, split=split, streaming=streaming, **load_kwargs)
    except (OSError, ConnectionError) as e:  # DatasetNotFoundError is a FileNotFoundError
        raise DataError(f"{hf_offline_message(name)} ({type(e).__name__}: {e})") from e
    except ValueError as e:  # unknown config or split
        raise DataError(f"hf dataset {name!r} config {config!r} split {split!r}: {e}") from e


def load_hf(name: str | None, config: str | None = None, split: str = "train", text_column: str | None = None,
            streaming: bool = False, max_documents: int | None = None) -> TextCorpus:
    """`datasets.load_dataset(name, config, split=split)`, e.g. ("wikitext", "wikitext-2-raw-v1").

    streaming=True reads rows lazily (Colab path for large sets); `max_documents` caps
    what is kept in memory. Offline it fails within seconds, naming the offline sources.
    """
    ds = open_hf_dataset(name, config, split, streaming=streaming)
    columns = list(ds.column_names or []) if ds.column_names is not None else list(next(iter(ds)).keys())
    col = pick_text_column(f"hf:{name}", columns, text_column)
    rows = ds if max_documents is None else (ds.take(max_documents) if streaming else
                                             ds.select(range(min(max_documents, len(ds)))))
    docs = [t.strip() for t in rows[col]] if not streaming else [r[col].strip() for r in rows]
    docs = [d for d in docs if d]
    if not docs:
        raise DataError(f"hf dataset {name!r} column {col!r} has no text")
    return TextCorpus(docs, name=f"{name}/{config}" if config else name, source="hf",
                      info={"split": split, "text_column": col})


def hf_spool_key(name: str, config: str | None, split: str, text_column: str | None,
                 max_documents: int | None, load_kwargs: dict) -> str:
    """The name of a spooled dataset's text file: same arguments, same file."""
    key = json.dumps([name, config, split, text_column, max_documents, sorted(map(str, load_kwargs.items()))])
    return f"hf-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def spool_hf_to_text(name: str, config: str | None, split: str, text_column: str | None, out_dir: Path, *,
                     max_documents: int | None = None, check_hub: bool = True, **load_kwargs) -> Path:
    """Stream a Hugging Face dataset row by row (`streaming=True`) into a text file, one
    document per line, under out_dir (the workspace's `text_dir`): constant memory
    whatever the dataset size, once per (name, config, split, column, cap). Chunk mode
    then reads that file with its cursor, so a resumed run continues where it stopped
    without streaming the dataset again. `load_kwargs` go to `datasets.load_dataset`
    (e.g. data_files for a local json dataset)."""
    path = Path(out_dir) / f"{hf_spool_key(name, config, split, text_column, max_documents, load_kwargs)}.txt"
    if path.exists():
        return path
    ds = open_hf_dataset(name, config, split, streaming=True, check_hub=check_hub, **load_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    col, n = None, 0
    # complete or absent: a killed spool is redone, not half-used (a cache: not fsynced)
    with atomic_open(path, "w", durable=False) as f:
        for row in ds:
            if col is None:
                col = pick_text_column(f"hf:{name}", list(row.keys()), text_column)
            text = " ".join(str(row[col] or "").split())  # one document per line
            if text:
                f.write(text + "\n")
                n += 1
                if max_documents is not None and n >= max_documents:
                    break
        if n == 0:
            raise DataError(f"hf dataset {name!r} split {split!r} has no text in column {col!r}")
    return path


# ---------------------------------------------------------------------------------------
# synthetic (tests only); which loader a name calls is registries.DATA_SOURCES


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


SOURCES = DATA_SOURCES.builders  # {name: loader}, a live view of the registry


def load_source(kind: str, **options) -> TextCorpus:
    """The corpus of data source `kind` (a registries.DATA_SOURCES name); options are its
    loader's keyword arguments (path, text_column, ...)."""
    if kind not in DATA_SOURCES:
        raise DataError(f"data_source must be one of {list(DATA_SOURCES)}, got {kind!r}")
    return DATA_SOURCES.builder(kind)(**options)


def source_options(config, overrides: dict) -> dict:
    """The keyword arguments of `load_source(config.data_source, ...)`: the config fields its
    registry entry names (facts["options"]; "" means not given: None), then `overrides`."""
    fields = DATA_SOURCES.get(config.data_source).facts.get("options", {})
    opts = {}
    for keyword, name in fields.items():
        value = getattr(config, name)
        opts[keyword] = None if value == "" else value
    return {**opts, **overrides}
