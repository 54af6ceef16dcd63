"""streaming.py: chunked reading with cursors, constant-memory token files, resumable chunk stream."""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils.training.data.pipeline import prepare_data
from utils.training.data.readers import DataError
from utils.training.data.sources import builtin_corpus
from utils.training.data.stream import ChunkedTokenWriter, ChunkStream, read_chunk
from utils.training.data.token_file import TokenFile
from utils.training.data.tokenizer import encode_documents, train_bpe_tokenizer


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return builtin_corpus()[:4000]


@pytest.fixture(scope="module")
def tok(docs, tmp_path_factory):
    return train_bpe_tokenizer(docs[:2000], 300, cache_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture
def text_file(tmp_path, docs):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    return path


def test_chunks_cover_the_corpus_exactly_once(text_file, docs, tok):
    expected = encode_documents(tok, docs)
    cursor, parts, n_docs = (0, 0), [], 0
    while cursor is not None:
        tokens, info, cursor = read_chunk([text_file], cursor, tok, 5000, doc_split="line")
        assert len(tokens) >= 5000 or cursor is None
        parts.append(tokens)
        n_docs += info["documents"]
    assert n_docs == len(docs) and len(parts) > 3
    assert np.array_equal(np.concatenate(parts), expected)


def test_gzip_jsonl_and_csv_chunks(tmp_path, docs, tok):
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs[:300])
    (tmp_path / "d.csv").write_text("id,text\n" + "".join(f'{i},"{d}"\n' for i, d in enumerate(docs[300:600])),
                                    encoding="utf-8")
    files = [tmp_path / "c.jsonl.gz", tmp_path / "d.csv"]
    cursor, parts = (0, 0), []
    while cursor is not None:
        tokens, _, cursor = read_chunk(files, cursor, tok, 2000)
        parts.append(tokens)
    assert np.array_equal(np.concatenate(parts), encode_documents(tok, docs[:600]))


def test_chunked_writer_builds_the_same_token_file(tmp_path, text_file, docs, tok):
    tf = ChunkedTokenWriter(tmp_path / "big", tok, corpus_hash="h").write_files([text_file], tokens_per_chunk=4000,
                                                                               doc_split="line")
    assert isinstance(tf, TokenFile) and tf.header["num_documents"] == len(docs)
    assert np.array_equal(np.asarray(tf.tokens), encode_documents(tok, docs))
    assert TokenFile.open(tmp_path / "big", vocab_size=len(tok)).tokens.dtype == np.uint16


def test_chunk_stream_resumes_across_chunks(text_file, tok):
    def stream():
        return ChunkStream([text_file], tok, batch_size=4, block_size=16, seed=0, tokens_per_chunk=3000,
                           batches_per_chunk=3, max_chunks=4, doc_split="line")

    run = stream()
    seen = [run.next_batch() for _ in range(5)]  # into chunk 1
    state = run.state_dict()
    assert state["chunk_index"] == 1 and state["batch_in_chunk"] == 2 and state["chunk_cursor"][1] > 0
    expected = [run.next_batch() for _ in range(12)]  # crosses chunks and the max_chunks wrap
    assert run.state_dict()["epoch"] == 1
    restarted = stream()
    restarted.load_state_dict(json.loads(json.dumps(state)))  # checkpoints store JSON-like dicts
    for e in expected:
        assert all(torch.equal(a, b) for a, b in zip(restarted.next_batch(), e))
    assert not torch.equal(seen[0][0], seen[3][0])
    first = list(run.eval_batches(2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, restarted.eval_batches(2)))


def test_prepare_data_chunk_mode_on_local_folder(tmp_path, text_file):
    cfg = SimpleNamespace(data_source="local", data_path=str(text_file.parent), text_column=None, tokenizer="bpe",
                          validation_split=0.1, block_size=16, batch_size=4, vocab_size=300, random_seed=0)
    data = prepare_data(cfg, tmp_path / "ws", mode="chunk", tokens_per_chunk=4000, doc_split="line")
    assert data.stats["mode"] == "chunk" and data.stats["val_tokens"] >= 4000 and data.vocab_size == 300
    assert isinstance(data.train, ChunkStream) and data.train.start != (0, 0)  # val chunk held out
    x, y = data.train.next_batch()
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(DataError, match="fits in its validation region"):
        prepare_data(cfg, tmp_path / "ws", mode="chunk", tokens_per_chunk=10**8, doc_split="line")


def test_hf_chunk_mode_spools_a_streamed_dataset_and_resumes(tmp_path):
    """data_source='hf' in chunk mode: rows are streamed (datasets streaming=True) into a
    text file once, then trained from chunk by chunk; a restart continues the same batches.
    A local json dataset stands in for a hub one (same datasets code path, offline)."""
    import json

    import torch

    from utils.training.config import TrainingConfig
    from utils.training.data.pipeline import prepare_data
    from utils.training.data.sources import builtin_corpus

    docs = builtin_corpus()[:6000]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)))
    cfg = TrainingConfig.preset("smoke", data_source="hf", hf_dataset="json", tokenizer="gpt2")
    opts = dict(mode="chunk", tokens_per_chunk=4096, check_hub=False, data_files=str(rows))
    data = prepare_data(cfg, tmp_path, **opts)
    spooled = list((tmp_path / "datasets" / "text").glob("hf-*.txt"))
    assert len(spooled) == 1
    assert spooled[0].read_text().splitlines() == [" ".join(d.split()) for d in docs]
    assert data.stats["mode"] == "chunk" and data.stats["source"] == "hf"

    for _ in range(7):
        data.train.next_batch()
    state = data.train.state_dict()
    expected = [data.train.next_batch() for _ in range(5)]
    mtime = spooled[0].stat().st_mtime_ns
    again = prepare_data(cfg, tmp_path, **opts)  # a restarted run: the spool is reused, not redone
    assert spooled[0].stat().st_mtime_ns == mtime
    again.train.load_state_dict(state)
    for x, y in expected:
        x2, y2 = again.train.next_batch()
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_chunk_mode_tokenizer_never_sees_validation_text(tmp_path, monkeypatch):
    """The built-in corpus gives ~5.6 bytes per BPE token: a held-out region sized by a token
    guess used to leak validation documents into the tokenizer's training sample."""
    from utils.training import tokenizer as tokenizer_module
    from utils.training.config import TrainingConfig
    from utils.training.data.pipeline import prepare_data
    from utils.training.data.sources import TextCorpus, builtin_corpus

    seen: list[str] = []
    real = tokenizer_module.load_tokenizer

    def spy(spec, texts=None, **kw):
        seen.extend(texts or [])
        return real(spec, texts=texts, **kw)

    monkeypatch.setattr(tokenizer_module, "load_tokenizer", spy)
    corpus = TextCorpus(builtin_corpus()[:20000], name="slice", source="builtin")
    cfg = TrainingConfig.preset("smoke", vocab_size=8192)
    data = prepare_data(cfg, tmp_path, mode="chunk", corpus=corpus, tokens_per_chunk=20000)
    assert seen, "the BPE trained on a sample"
    # Everything before the training stream's start cursor is validation: the tokenizer's
    # sample must come entirely from after it.
    from utils.training.data.stream import read_documents

    after_start, _ = read_documents(data.train.files, data.train.start, 10**9, doc_split="line")
    assert set(seen) <= set(after_start)
    assert data.val_documents == corpus.documents[: len(data.val_documents)]  # the held-out head


def test_chunk_stream_is_a_batch_source(text_file, tok):
    from utils.training.contracts import BatchSource

    stream = ChunkStream([text_file], tok, batch_size=4, block_size=16, tokens_per_chunk=3000, doc_split="line")
    assert isinstance(stream, BatchSource)


def test_old_streaming_path_keeps_its_names():
    from utils.training import streaming

    for name in ("ChunkedTokenWriter", "ChunkStream", "read_chunk", "read_documents", "sample_documents",
                 "spool_hf_to_text", "prepare_chunks", "PIECE_BYTES"):
        assert getattr(streaming, name) is not None, name
    assert streaming.ChunkStream is ChunkStream
