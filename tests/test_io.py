"""utils/training/io.py: the one atomic write."""

from __future__ import annotations

import json
import math
import os

import pytest

from utils.training.io import (
    atomic_copy,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    is_temp_name,
    temp_path,
)


def test_writes_replace_the_file_whole(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1, "nan": math.nan})
    assert json.loads(p.read_text())["x"] == 1 and math.isnan(json.loads(p.read_text())["nan"])
    atomic_write_text(p, "second")
    assert p.read_text() == "second"
    atomic_write_bytes(p, b"\x00\x01", durable=False)
    assert p.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["a.json"]  # no temp file left beside it


def test_an_error_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "run.json"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(p, "w") as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["run.json"]


def test_an_interrupt_mid_write_leaves_no_temp(tmp_path):
    p = tmp_path / "x.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(p) as f:
            f.write(b"abc")
            raise KeyboardInterrupt
    assert not p.exists() and os.listdir(tmp_path) == []


def test_temp_names_are_hidden_per_process_and_recognised(tmp_path):
    t = temp_path(tmp_path / "ckpt.pt")
    assert t.parent == tmp_path and t.name.startswith(".ckpt.pt.") and str(os.getpid()) in t.name
    assert is_temp_name(t.name) and not is_temp_name("ckpt.pt") and not is_temp_name(".hidden")


def test_copy(tmp_path):
    src = tmp_path / "src.db"
    src.write_bytes(os.urandom(3 << 20))  # more than one 1 MiB chunk
    atomic_copy(src, tmp_path / "dest.db")
    assert (tmp_path / "dest.db").read_bytes() == src.read_bytes()


def test_only_write_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
