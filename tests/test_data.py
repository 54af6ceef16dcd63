"""data.py: every source on small real fixtures, every bad input's error, prepare_data."""

from __future__ import annotations

import csv
import gzip
import json
import time
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from utils.training.data.pipeline import prepare_data, split_documents
from utils.training.data.readers import DataError
from utils.training.data.sources import TextCorpus, builtin_corpus, load_source


def make_config(**kw) -> SimpleNamespace:
    base = dict(run_name="t", data_source="builtin", data_path=None, hf_dataset=None, hf_config=None,
                text_column=None, tokenizer="bpe", validation_split=0.1, block_size=64, batch_size=8,
                vocab_size=512, random_seed=0)
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.fixture(scope="module")
def small_corpus() -> TextCorpus:
    return TextCorpus(builtin_corpus()[:3000], name="icd10cm-3k", source="builtin")


# ----- builtin and split


def test_builtin_corpus_is_deterministic_and_deduplicated():
    docs = builtin_corpus()
    assert 95_000 < len(docs) < 99_000 and len(set(docs)) == len(docs)
    assert docs[:3] == ["Certain infectious and parasitic diseases (A00-B99)",
                        "Intestinal infectious diseases (A00-A09)", "Cholera"]
    assert 6_000_000 < sum(len(d.encode()) for d in docs) < 8_000_000
    assert builtin_corpus() == docs


def test_split_is_deterministic_and_disjoint():
    docs = [f"doc {i}" for i in range(1000)]
    train, val = split_documents(docs, 0.1, seed=1)
    assert len(val) == 100 and len(train) == 900 and not set(train) & set(val)
    assert split_documents(docs, 0.1, seed=1) == (train, val)
    assert split_documents(docs, 0.1, seed=2)[1] != val
    with pytest.raises(DataError, match="validation_split"):
        split_documents(docs, 1.5, 0)


# ----- local files of every kind


def test_local_txt_jsonl_csv_parquet_gz_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph\nstill first.\n\nSecond one.\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"id": i, "text": f"row {i}"}) for i in range(3)))
    with open(tmp_path / "c.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "body"], [1, "csv one"], [2, "csv, two"]])
    pq.write_table(pa.table({"content": ["pq one", "pq two"], "n": [1, 2]}), tmp_path / "d.parquet")
    with gzip.open(tmp_path / "e.txt.gz", "wt", encoding="utf-8") as f:
        f.write("gzipped text")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    corpus = load_source("local", path=tmp_path)
    assert corpus.documents == ["First paragraph\nstill first.", "Second one.", "row 0", "row 1", "row 2",
                                "csv one", "csv, two", "pq one", "pq two", "gzipped text"]
    assert corpus.source == "local" and not corpus.synthetic
    assert load_source("local", path=tmp_path / "a.txt", doc_split="line").documents[:2] == [
        "First paragraph", "still first."]
    assert load_source("local", path=tmp_path / "c.csv", text_column="body").documents[0] == "csv one"


def test_drive_is_local_under_the_drive_root(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("drive text", encoding="utf-8")
    corpus = load_source("drive", path="data", drive_root=tmp_path)
    assert corpus.documents == ["drive text"] and corpus.source == "drive"
    with pytest.raises(DataError, match="Drive is not mounted"):
        load_source("drive", path="data", drive_root=tmp_path / "nope")


def test_upload_outside_colab_takes_a_path(tmp_path):
    (tmp_path / "up.txt").write_text("uploaded", encoding="utf-8")
    assert load_source("upload", path=tmp_path / "up.txt").documents == ["uploaded"]
    with pytest.raises(DataError, match="outside Colab"):
        load_source("upload")


def test_synthetic_is_labelled():
    corpus = load_source("synthetic", num_documents=10, seed=0)
    assert corpus.synthetic and "synthetic" in corpus.name and len(corpus.documents) == 10
    assert load_source("synthetic", num_documents=10, seed=0).documents == corpus.documents


def test_hf_offline_fails_fast_naming_offline_sources():
    start = time.perf_counter()
    with pytest.raises(DataError, match="builtin.*local"):
        load_source("hf", name="wikitext", config="wikitext-2-raw-v1")
    assert time.perf_counter() - start < 30  # never hangs (generous: shared CI machines)
    with pytest.raises(DataError, match="hf_dataset"):
        load_source("hf", name=None)


# ----- bad input: each names the file and the problem


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="nope.txt does not exist"):
        load_source("local", path=tmp_path / "nope.txt")
    with pytest.raises(DataError, match="needs data_path"):
        load_source("local", path=None)


def test_empty_file(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n")
    with pytest.raises(DataError, match="empty.txt: file is empty"):
        load_source("local", path=tmp_path / "empty.txt")


def test_binary_and_non_utf8_name_the_byte_offset(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"hello\x00\x01\x02")
    with pytest.raises(DataError, match=r"bin.txt: looks binary \(NUL at byte offset 5\)"):
        load_source("local", path=tmp_path / "bin.txt")
    (tmp_path / "latin.txt").write_bytes("caf\u00e9 ok".encode("latin-1"))
    with pytest.raises(DataError, match="latin.txt: not valid UTF-8 at byte offset 3"):
        load_source("local", path=tmp_path / "latin.txt")


def test_csv_without_text_column_lists_columns(tmp_path):
    (tmp_path / "t.csv").write_text("id,label\n1,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t.csv: cannot tell.*\['id', 'label'\]"):
        load_source("local", path=tmp_path / "t.csv")
    (tmp_path / "u.csv").write_text("id,text\n1,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"u.csv: no text column 'body'; columns are \['id', 'text'\]"):
        load_source("local", path=tmp_path / "u.csv", text_column="body")


def test_folder_without_text_files_and_unknown_source(tmp_path):
    with pytest.raises(DataError, match="has no .txt"):
        load_source("local", path=tmp_path)
    with pytest.raises(DataError, match="data_source must be one of"):
        load_source("ftp")


def test_corpus_smaller_than_one_block(tmp_path):
    (tmp_path / "tiny.txt").write_text("a few words\n\nand more\n\nyet more\n", encoding="utf-8")
    cfg = make_config(data_source="local", data_path=str(tmp_path / "tiny.txt"), tokenizer="gpt2",
                      validation_split=0.34)
    with pytest.raises(DataError, match="tiny.txt.*fewer than one block"):
        prepare_data(cfg, tmp_path / "ws")


# ----- prepare_data


def test_prepare_packed_caches_and_resumes(tmp_path, small_corpus):
    cfg = make_config(vocab_size=300, block_size=32, batch_size=4)
    data = prepare_data(cfg, tmp_path, corpus=small_corpus)
    s = data.stats
    assert data.vocab_size == len(data.tokenizer) == 300 and s["cached"] is False and s["synthetic"] is False
    assert s["documents"] == 3000 and s["tokens"] == s["train_tokens"] + s["val_tokens"]
    assert 1.5 < data.bytes_per_token == s["bytes_per_token"] < 6 and data.val_documents
    x, y = data.train.next_batch()
    assert x.shape == (4, 32) and x.dtype == torch.int64 and int(x.max()) < 300
    state = data.train.state_dict()
    expected = data.train.next_batch()
    again = prepare_data(cfg, tmp_path, corpus=small_corpus)  # a restarted run
    assert again.stats["cached"] is True
    again.train.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(again.train.next_batch(), expected))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(data.val.eval_batches(2), again.val.eval_batches(2)))
    assert list((tmp_path / "datasets").glob("*/train.bin")) and list((tmp_path / "datasets" / "tokenizers").iterdir())


def test_prepare_sample_mode_pads_documents(tmp_path, small_corpus):
    data = prepare_data(make_config(tokenizer="gpt2", block_size=32, batch_size=4), tmp_path,
                        mode="sample", corpus=small_corpus)
    x, y = data.train.next_batch()
    assert x.shape == (4, 32) and (y == -100).any() and data.stats["mode"] == "sample"


def test_prepare_from_local_source_and_synthetic(tmp_path):
    (tmp_path / "notes.jsonl").write_text("\n".join(json.dumps({"text": f"note {i} " * 20}) for i in range(60)))
    data = prepare_data(make_config(data_source="local", data_path=str(tmp_path / "notes.jsonl"), tokenizer="gpt2",
                                    block_size=16, batch_size=2), tmp_path / "ws")
    assert data.stats["source"] == "local" and data.stats["documents"] == 60
    syn = prepare_data(make_config(data_source="synthetic", vocab_size=300, block_size=16, batch_size=2),
                       tmp_path / "ws", num_documents=200)
    assert syn.stats["synthetic"] is True and syn.stats["source"] == "synthetic"


def test_prepare_builtin_smoke_preset(tmp_path):
    """The default everywhere: builtin corpus, BPE 512, block 64, batch 8."""
    data = prepare_data(make_config(), tmp_path)
    assert data.stats["source"] == "builtin" and data.stats["documents"] > 95_000
    assert data.vocab_size == 512 and data.tokenizer.eos_token == "<|endoftext|>"
    assert data.stats["val_tokens"] > 100_000
    assert data.train.next_batch()[0].shape == (8, 64)


def test_prepare_bad_mode(tmp_path, small_corpus):
    with pytest.raises(DataError, match="mode must be one of"):
        prepare_data(make_config(), tmp_path, mode="bogus", corpus=small_corpus)


def test_unigram_entropy_on_countable_tokens():
    import math

    import numpy as np

    from utils.training.data.pipeline import unigram_entropy

    assert unigram_entropy(np.array([0, 1, 2, 3] * 5, dtype=np.uint16), 8) == pytest.approx(math.log(4))
    assert unigram_entropy(np.array([7, 7, 7], dtype=np.uint16), 8) == 0.0
    # p = (1/2, 1/4, 1/4): H = 1.5 bits
    assert unigram_entropy(np.array([0, 0, 1, 2]), 3) == pytest.approx(1.5 * math.log(2))


def test_builtin_corpus_cache_matches_the_package_and_survives_damage(tmp_path, monkeypatch):
    from utils.training.data import sources as data

    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path))
    data._builtin_tuple.cache_clear()
    try:
        first = data.builtin_corpus()
        cached = list(tmp_path.glob("slm-notebooks/icd10cm-*.json.gz"))
        assert len(cached) == 1
        assert first == data._parse_builtin()
        cached[0].write_bytes(b"not gzip")  # a damaged cache is parsed again and rewritten
        data._builtin_tuple.cache_clear()
        assert data.builtin_corpus() == first
        data._builtin_tuple.cache_clear()
        assert data.builtin_corpus() == first  # read from the rewritten cache
    finally:
        data._builtin_tuple.cache_clear()


def test_a_config_with_default_text_column_detects_the_csv_column(tmp_path):
    from utils.training.config import TrainingConfig
    from utils.training.data.pipeline import prepare_data
    from utils.training.data.sources import builtin_corpus

    csv_path = tmp_path / "notes.csv"
    docs = builtin_corpus()[:3000]
    csv_path.write_text("id,description\n" + "".join(f'{i},"{d}"\n' for i, d in enumerate(docs)))
    cfg = TrainingConfig.preset("smoke", data_source="local", data_path=str(csv_path))  # text_column "" = detect
    data = prepare_data(cfg, tmp_path)
    assert data.stats["documents"] == len(docs) and data.stats["source"] == "local"


def test_a_txt_of_one_document_per_line_is_detected_and_the_split_said(tmp_path):
    lines = builtin_corpus()[:400]  # one ICD-10-CM description per line, no blank lines
    (tmp_path / "codes.txt").write_text("\n".join(lines) + "\n")
    data = prepare_data(make_config(data_source="local", data_path=str(tmp_path / "codes.txt"), tokenizer="gpt2",
                                    block_size=16, batch_size=2), tmp_path / "ws")
    assert data.stats["documents"] == len(lines) and data.stats["doc_split"] == "line (auto)"
    (tmp_path / "essays.txt").write_text("first essay\nstill the first\n\nsecond essay\n")
    auto = load_source("local", path=str(tmp_path / "essays.txt"))
    assert auto.documents == ["first essay\nstill the first", "second essay"]
    assert auto.info["doc_split"] == "paragraph (auto)"
    assert len(load_source("local", path=str(tmp_path / "essays.txt"), doc_split="line").documents) == 3
    with pytest.raises(DataError, match="doc_split must be one of"):
        load_source("local", path=str(tmp_path / "essays.txt"), doc_split="sentence")


def test_old_data_names_import_from_the_package():
    from utils.training import data
    from utils.training.data import (  # noqa: F401  the names of the former data.py
        DataError,
        PreparedData,
        TextCorpus,
        builtin_corpus,
        hf_offline_message,
        list_data_files,
        load_source,
        prepare_data,
        split_documents,
        unigram_entropy,
    )

    assert data.DataError is DataError and data.load_local is data.sources.load_local
    with pytest.raises(AttributeError):
        data.no_such_name  # noqa: B018


def test_token_files_and_tokenizers_are_where_the_workspace_names_them(tmp_path, small_corpus):
    from utils.training.data.tokenizer import corpus_hash, tokenizer_id
    from utils.training.workspace import Workspace

    ws = Workspace(tmp_path)
    data = prepare_data(make_config(vocab_size=300, block_size=32, batch_size=4), ws, corpus=small_corpus)
    train, _ = split_documents(small_corpus.documents, 0.1, 0)
    stem = ws.token_file_path(corpus_hash(train), tokenizer_id(data.tokenizer), "train")
    assert stem.with_suffix(".bin").exists() and stem.with_suffix(".json").exists()
    assert list(ws.tokenizers_dir.glob("bpe-*.json"))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temp file left behind
