"""prepare_data: a validated TrainingConfig in, everything the trainer needs from the data out.

source (sources.py) -> train/val split -> tokenizer (trained on the training split
only) -> cached packed token files -> batch sources (sampler.py), or in chunk mode a
stream of chunks (stream.py). Everything derived is cached under the workspace's
datasets/ folder, named by `Workspace`. The result is one `PreparedData` whose `stats`
are built in one place for every mode.

The config is validated where it is made (TrainingConfig); this module reads its fields
as they are and has no defaults of its own.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from utils.training.contracts import BatchSource
from utils.training.data.readers import DataError
from utils.training.data.sources import TextCorpus, data_files, load_source, source_options, spool_hf_to_text
from utils.training.io import atomic_write_text
from utils.training.registries import DATA_SOURCES
from utils.training.workspace import Workspace

if TYPE_CHECKING:
    from utils.training.config import TrainingConfig

MODES = ("packed", "chunk", "sample")
ENCODE_DOCS = 20_000  # documents per encode_batch call: bounds peak memory on big corpora
FILE_SOURCES = DATA_SOURCES.where("reads", "files")


@dataclass
class PreparedData:
    train: BatchSource
    val: BatchSource  # eval_batches
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    vocab_size: int  # len(tokenizer): the model's embedding size
    bytes_per_token: float  # UTF-8 bytes per token on val, for val_bpb (tokenizer.bytes_per_token)
    stats: dict
    val_documents: list[str]


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


def check_block(n_tokens: int, block_size: int, split: str, where: str) -> None:
    """DataError unless a split holds at least one (x, y) window of block_size + 1 tokens."""
    if n_tokens < block_size + 1:
        raise DataError(
            f"{where}: the {split} split has {n_tokens} tokens, fewer than one block + 1 "
            f"({block_size + 1}); use more text, a smaller block_size or a different validation_split"
        )


def unigram_entropy(tokens, vocab_size: int) -> float:
    """Entropy of the token frequency distribution, nats/token: the cross-entropy of the
    best model that ignores context. A language model has learned something from context
    only once its val_loss is below this."""
    counts = np.bincount(np.asarray(tokens), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def data_stats(*, source: str, name: str, synthetic: bool, tokenizer, mode: str, bytes_per_token: float,
               val_tokens: int, documents: int | None = None, n_bytes: int, train_tokens: int | None = None,
               **extra) -> dict:
    """The one stats dict of every mode (the run's summary card and the database read it).
    Counts a streamed corpus does not know (documents, train_tokens, tokens) are None."""
    from utils.training.data.tokenizer import tokenizer_id

    return {
        "source": source, "name": name, "documents": documents, "bytes": n_bytes,
        "tokens": None if train_tokens is None else train_tokens + val_tokens, "bytes_per_token": bytes_per_token,
        "train_tokens": train_tokens, "val_tokens": val_tokens, "synthetic": synthetic,
        "tokenizer": tokenizer_id(tokenizer), "vocab_size": len(tokenizer), "mode": mode, **extra,
    }


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


def prepare_data(config: TrainingConfig, workspace_dir: str | os.PathLike | Workspace, *, rank: int = 0,
                 world_size: int = 1, mode: str = "packed", corpus: TextCorpus | None = None,
                 **options) -> PreparedData:
    """Everything the trainer needs from the data, cached under WORKSPACE/datasets/.

    mode: "packed" (documents joined by eos, random windows), "chunk" (a stream of chunks,
    for corpora larger than memory; options tokens_per_chunk, max_chunks, see
    `prepare_chunks`), "sample" (one document per row, truncated/padded). The tokenizer
    trains on the training split only; token files are keyed by the split's hash and the
    tokenizer id. Other options go to the source's loader (`load_source`).
    """
    from utils.training.data import tokenizer as tokenizers  # looked up per call: tests spy on it
    from utils.training.data.sampler import DocumentBatchSampler, RandomBatchSampler

    if mode not in MODES:
        raise DataError(f"mode must be one of {MODES}, got {mode!r}")
    ws = workspace_dir if isinstance(workspace_dir, Workspace) else Workspace(Path(workspace_dir))
    if mode == "chunk":
        return prepare_chunks(config, ws, rank=rank, world_size=world_size, corpus=corpus, **options)
    for chunk_only in ("tokens_per_chunk", "max_chunks"):  # so callers may pass them in every mode
        options.pop(chunk_only, None)
    B, T, seed = config.batch_size, config.block_size, config.random_seed
    if corpus is None:
        corpus = load_source(config.data_source, **source_options(config, options))
    where = f"{corpus.source} corpus {corpus.name!r}"
    train_docs, val_docs = split_documents(corpus.documents, float(config.validation_split), seed)
    if not val_docs:
        raise DataError(f"{where}: validation_split must be > 0 to measure val_loss")
    tokenizer = tokenizers.load_tokenizer(config.tokenizer, texts=train_docs, vocab_size=config.vocab_size,
                                          cache_dir=ws.tokenizers_dir)
    tok_id = tokenizers.tokenizer_id(tokenizer)
    files = {}
    cached = True
    for split, docs in (("train", train_docs), ("val", val_docs)):
        h = tokenizers.corpus_hash(docs)
        files[split], hit = _token_file(ws.token_file_path(h, tok_id, split), docs, tokenizer, tok_id, h)
        cached = cached and hit
    train_tokens, val_tokens = files["train"].tokens, files["val"].tokens
    check_block(len(train_tokens), T, "train", where)
    check_block(len(val_tokens), T, "val", where)
    if mode == "sample":
        eos = tokenizer.eos_token_id
        train = DocumentBatchSampler(train_tokens, eos, B, T, seed, rank, world_size)
        val = DocumentBatchSampler(val_tokens, eos, B, T, seed, rank, world_size)
    else:
        train = RandomBatchSampler(train_tokens, B, T, seed, rank, world_size)
        val = RandomBatchSampler(val_tokens, B, T, seed, rank, world_size)
    bpt = tokenizers.bytes_per_token(val_docs, len(val_tokens))
    stats = data_stats(source=corpus.source, name=corpus.name, synthetic=corpus.synthetic, tokenizer=tokenizer,
                       mode=mode, bytes_per_token=bpt, val_tokens=len(val_tokens), documents=len(corpus.documents),
                       n_bytes=corpus.num_bytes, train_tokens=len(train_tokens), cached=cached,
                       unigram_entropy=unigram_entropy(train_tokens, len(tokenizer)))
    if corpus.info.get("doc_split"):  # how .txt files became documents: said in the summary
        stats["doc_split"] = corpus.info["doc_split"]
    return PreparedData(train, val, tokenizer, len(tokenizer), bpt, stats, val_docs[:8])


def prepare_chunks(config: TrainingConfig, workspace: Workspace | str | os.PathLike, *, rank: int = 0,
                   world_size: int = 1, corpus: TextCorpus | None = None, tokens_per_chunk: int = 1 << 20,
                   max_chunks: int | None = None, bpe_sample_bytes: int = 8 << 20, **options) -> PreparedData:
    """prepare_data(mode="chunk"): the corpus's first tokens_per_chunk x 4 bytes of documents
    are held out as val, training streams the rest (a ChunkStream).

    File sources stream from their files; hf is spooled once to a text file (row by row);
    builtin/synthetic/in-memory corpora are written once to the workspace's text_dir (one
    document per line). The BPE tokenizer trains on up to `bpe_sample_bytes` of text after
    the held-out region (training text only).
    """
    from utils.training.data import tokenizer as tokenizers  # looked up per call: tests spy on it
    from utils.training.data.sampler import RandomBatchSampler
    from utils.training.data.stream import ChunkStream, CorpusReader
    from utils.training.data.token_file import dtype_for_vocab

    ws = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
    kind, text_column = config.data_source, config.text_column or None  # "" in a config means: detect it
    B, T, seed = config.batch_size, config.block_size, config.random_seed
    doc_split = options.pop("doc_split", "paragraph")
    synthetic = False
    reads = DATA_SOURCES.get(kind).facts.get("reads")  # "files", "hub" or "memory"
    if corpus is None and reads == "files":
        opts = source_options(config, options)
        files, name = data_files(kind, opts.get("path"), opts.get("drive_root")), Path(opts.get("path") or "").name
    elif corpus is None and reads == "hub":
        name = f"{config.hf_dataset}/{config.hf_config}" if config.hf_config else config.hf_dataset
        hf_opts = {k: v for k, v in options.items() if k in ("split", "max_documents", "check_hub", "data_files")}
        files = [spool_hf_to_text(config.hf_dataset, config.hf_config or None, hf_opts.pop("split", "train"),
                                  text_column, ws.text_dir, **hf_opts)]
        doc_split, text_column = "line", None
    else:
        corpus = corpus or load_source(kind, **source_options(config, options))
        synthetic, name, kind, doc_split = corpus.synthetic, corpus.name, corpus.source, "line"
        text_path = ws.text_dir / f"{tokenizers.corpus_hash(corpus.documents)[:16]}.txt"
        if not text_path.exists():
            text_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(text_path, "".join(d.replace("\n", " ") + "\n" for d in corpus.documents),
                              durable=False)  # a cache of the corpus: rewritten if lost
        files = [text_path]
    where = f"{kind} corpus {name!r}"
    # Validation is the corpus's first ~tokens_per_chunk tokens' worth of text, held out by
    # bytes (4 per token, generous for BPE): training chunks and the BPE sample both start
    # after it, so the tokenizer never sees validation text.
    reader = CorpusReader(files, text_column, doc_split)
    try:
        val_docs = reader.read(tokens_per_chunk * 4)
        start = reader.cursor
        if start is None:
            raise DataError(f"{where} fits in its validation region ({tokens_per_chunk * 4} bytes): use "
                            "mode='packed' or a smaller tokens_per_chunk")
        sample = reader.read(bpe_sample_bytes) if config.tokenizer == "bpe" else None
    finally:
        reader.close()
    tokenizer = tokenizers.load_tokenizer(config.tokenizer, texts=sample, vocab_size=config.vocab_size,
                                          cache_dir=ws.tokenizers_dir)
    del sample
    val_tokens = tokenizers.encode_documents(tokenizer, val_docs).astype(dtype_for_vocab(len(tokenizer)))
    check_block(len(val_tokens), T, "val", where)
    train = ChunkStream(files, tokenizer, B, T, seed, rank, world_size, tokens_per_chunk=tokens_per_chunk,
                        max_chunks=max_chunks, start=start, text_column=text_column, doc_split=doc_split)
    val = RandomBatchSampler(val_tokens, B, T, seed, rank, world_size)
    bpt = tokenizers.bytes_per_token(val_docs, len(val_tokens))
    stats = data_stats(source=kind, name=name, synthetic=synthetic, tokenizer=tokenizer, mode="chunk",
                       bytes_per_token=bpt, val_tokens=len(val_tokens), n_bytes=sum(f.stat().st_size for f in files),
                       tokens_per_chunk=tokens_per_chunk, max_chunks=max_chunks)
    return PreparedData(train, val, tokenizer, len(tokenizer), bpt, stats, val_docs[:8])
