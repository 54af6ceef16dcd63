"""readers.py: one reader per format; whole-file loading and chunk mode see the same
documents and errors, and a reader continues from its cursor (each file parsed once)."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from utils.training.data.readers import ROWS_PER_BLOCK, DataError, open_reader
from utils.training.data.sources import builtin_corpus, load_source
from utils.training.data.stream import (
    ChunkedTokenWriter,
    ChunkStream,
    CorpusReader,
    read_chunk,
    read_documents,
)
from utils.training.data.tokenizer import encode_documents, train_bpe_tokenizer

ROWS = 3000


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return builtin_corpus()[:ROWS]


@pytest.fixture(scope="module")
def tok(docs, tmp_path_factory):
    return train_bpe_tokenizer(docs[:1500], 300, cache_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture
def tables(tmp_path, docs):
    """The same documents as a CSV (blank lines between some rows) and a parquet file of
    row groups of 500 rows."""
    with open(tmp_path / "a.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i, d in enumerate(docs):
            w.writerow([i, d])
            if i % 700 == 0:
                f.write("\r\n")  # a blank line is not a row
    pq.write_table(pa.table({"n": list(range(ROWS)), "text": docs}), tmp_path / "b.parquet", row_group_size=500)
    return [tmp_path / "a.csv", tmp_path / "b.parquet"]


def test_chunk_mode_parses_each_csv_and_parquet_row_once(tables, docs, tok):
    """Many chunks of a CSV and a parquet file: every row is parsed once and each file is
    opened once (chunk mode used to re-read both from row 0 for every piece: quadratic)."""
    reader = CorpusReader(tables)
    cursor, parts, chunks = (0, 0), [], 0
    while cursor is not None:
        tokens, _, cursor = read_chunk(reader, cursor, tok, 4000)
        parts.append(tokens)
        chunks += 1
    assert chunks >= 10
    assert reader.opens == 2 and reader.units_read == 2 * ROWS  # linear: rows of both files, once
    assert np.array_equal(np.concatenate(parts), encode_documents(tok, docs + docs))


def test_chunk_stream_continues_its_reader_across_chunks(tables, tok):
    stream = ChunkStream(tables[:1], tok, batch_size=2, block_size=16, tokens_per_chunk=3000, batches_per_chunk=2)
    for _ in range(2 * 8):  # 8 chunks
        stream.next_batch()
    assert stream.chunk_index == 8 and stream.reader.opens == 1
    read_to = stream.reader.cursor[1]  # rows parsed: those to the cursor, once, and one block read ahead
    assert read_to <= stream.reader.units_read <= read_to + ROWS_PER_BLOCK < ROWS


def test_resuming_a_parquet_cursor_skips_whole_row_groups_unread(tables, docs):
    reader = CorpusReader(tables[1:], cursor=(0, 1700))
    assert reader.read() == docs[1700:]
    assert reader.units_read == ROWS - 1500  # groups 0-2 skipped by their metadata, group 3 read from its start
    again, _ = read_documents(tables[:1], (0, 1700), 10**9)  # csv: parsed up to the cursor, not kept
    assert again == docs[1700:]


def test_whole_file_and_chunk_mode_read_the_same_documents(tmp_path):
    """The packed pipeline (load_source) and chunk mode (read_documents) share the readers:
    indented lines inside a paragraph, CRLF endings, rows without text, gzip."""
    (tmp_path / "a.txt").write_bytes(b"  Title\r\n    indented line\r\n \r\nSecond\tpara\n\n\n\nthird\n")
    (tmp_path / "b.jsonl").write_text("\n".join([json.dumps({"text": " x "}), "", json.dumps({"text": None}),
                                                 json.dumps({"text": "y", "n": 1})]))
    with gzip.open(tmp_path / "c.csv.gz", "wt", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["body"], ["multi\nline cell"], [""], ["last"]])
    whole = load_source("local", path=tmp_path, doc_split="paragraph").documents
    files = sorted(tmp_path.iterdir())
    streamed, end = read_documents(files, (0, 0), 10**9, doc_split="paragraph")
    assert end is None and streamed == whole
    assert whole == ["Title\r\n    indented line", "Second\tpara", "third", "x", "y", "multi\nline cell", "last"]
    pieces, cursor = [], (0, 0)
    while cursor is not None:  # a few bytes at a time: documents are never cut
        piece, cursor = read_documents(files, cursor, 5, doc_split="paragraph")
        pieces.extend(piece)
    assert pieces == whole


@pytest.mark.parametrize("name, raw, message", [
    ("bin.txt", b"ok line\nhello\x00", r"bin.txt: looks binary \(NUL at byte offset 13\)"),
    ("latin.txt", "ok\ncaf\u00e9".encode("latin-1"), "latin.txt: not valid UTF-8 at byte offset 6"),
    ("bad.jsonl", b'{"text": "a"}\n{oops\n', "bad.jsonl: line 2 is not valid JSON"),
    ("list.jsonl", b'["a"]\n', "list.jsonl: line 1 is not a JSON object"),
    ("empty.csv", b" \n", "empty.csv: file is empty"),
    ("none.jsonl", b'{"text": ""}\n', "none.jsonl: contains no text documents"),
])
def test_bad_files_give_the_same_error_in_both_modes(tmp_path, name, raw, message):
    (tmp_path / name).write_bytes(raw)
    with pytest.raises(DataError, match=message):
        load_source("local", path=tmp_path / name)
    with pytest.raises(DataError, match=message):
        read_documents([tmp_path / name], (0, 0), 10**6)


def test_a_resumed_jsonl_error_names_the_byte_offset(tmp_path):
    (tmp_path / "r.jsonl").write_bytes(b'{"text": "a"}\n{oops\n')
    with pytest.raises(DataError, match="r.jsonl: the line at byte offset 14 is not valid JSON"):
        open_reader(tmp_path / "r.jsonl", 14)


def test_chunked_writer_reads_a_csv_in_one_pass(tmp_path, tables, docs, tok):
    tf = ChunkedTokenWriter(tmp_path / "t", tok).write_files(tables[:1], tokens_per_chunk=2000)
    assert tf.header["num_documents"] == ROWS
    assert np.array_equal(np.asarray(tf.tokens), encode_documents(tok, docs))
