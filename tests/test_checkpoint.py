"""Checkpoint files: atomic writes, retention, unreadable files skipped, the mirror."""

from __future__ import annotations

import threading

import pytest
import torch

import utils.training.checkpoint as ck
from utils.training.checkpoint import CheckpointManager


def state(step: int, value: float = 1.0) -> dict:
    return {"step": step, "model": {"w": torch.full((4, 4), value)}, "rng": [{"torch": torch.get_rng_state()}],
            "trainer_state": {"best_val_loss": float("inf"), "tracking": {"db_run_id": 3}}}


def names(mgr: CheckpointManager) -> list[str]:
    return [p.name for p in mgr.checkpoints()]


def test_save_load_roundtrip_with_weights_only(tmp_path):
    mgr = CheckpointManager(tmp_path / "checkpoints", keep=2)
    path = mgr.save(state(7, 2.5), step=7)
    assert path.name == "step_00000007.pt"
    loaded = torch.load(path, weights_only=True)  # plain types and tensors only
    assert torch.equal(loaded["model"]["w"], torch.full((4, 4), 2.5))
    assert loaded["trainer_state"]["tracking"] == {"db_run_id": 3}
    assert mgr.latest_valid() == path and mgr.load(path)["step"] == 7


def test_keeps_last_k_plus_best(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    for s in range(1, 7):
        mgr.save(state(s), step=s, is_best=(s == 2))
    assert names(mgr) == ["step_00000002.pt", "step_00000005.pt", "step_00000006.pt"]
    # The best survives a new manager (a resumed run) too.
    mgr2 = CheckpointManager(tmp_path, keep=2)
    mgr2.save(state(7), step=7)
    assert names(mgr2) == ["step_00000002.pt", "step_00000006.pt", "step_00000007.pt"]


def test_unreadable_newest_is_skipped_and_older_one_found(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=3)
    mgr.save(state(1), step=1)
    good = mgr.save(state(2), step=2)
    (tmp_path / "step_00000003.pt").write_bytes(good.read_bytes()[:100])  # a truncated write
    (tmp_path / "step_00000004.pt").write_bytes(b"")
    assert CheckpointManager(tmp_path, keep=3).latest_valid() == good


def test_temp_files_of_killed_writes_are_swept(tmp_path):
    (tmp_path / "step_00000005.pt.tmp-999").write_bytes(b"half a checkpoint")
    mgr = CheckpointManager(tmp_path, keep=2)
    assert list(tmp_path.iterdir()) == [] and mgr.latest_valid() is None


def test_failed_write_loses_nothing(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, keep=1)
    good = mgr.save(state(1), step=1)

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        mgr.save(state(2), step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]
    assert mgr.latest_valid() == good


def test_refuses_non_finite_weights_and_keeps_the_old_ones(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=1)
    good = mgr.save(state(1), step=1)
    with pytest.raises(ValueError, match="step 2.*non-finite.*w"):
        mgr.save(state(2, float("nan")), step=2)
    assert names(mgr) == [good.name]


def test_rejects_bad_keep(tmp_path):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="keep_checkpoints"):
            CheckpointManager(tmp_path, keep=bad)


def test_mirror_gets_verified_copies_and_serves_resume(tmp_path):
    mirror = tmp_path / "drive"
    mgr = CheckpointManager(tmp_path / "local", keep=2, mirror_dir=mirror)
    for s in (1, 2, 3):
        mgr.save(state(s), step=s)
        assert mgr.wait_for_mirror(10)
    assert sorted(p.name for p in mirror.iterdir()) == ["step_00000002.pt", "step_00000003.pt"]
    assert (mirror / "step_00000003.pt").read_bytes() == (tmp_path / "local" / "step_00000003.pt").read_bytes()
    # A fresh runtime: the local disk is empty, the mirror still has the run.
    fresh = CheckpointManager(tmp_path / "new_local", keep=2, mirror_dir=mirror)
    assert fresh.latest_valid() == mirror / "step_00000003.pt"


def test_failing_mirror_is_reported_once_and_training_continues(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    mgr = CheckpointManager(tmp_path / "local", keep=2, mirror_dir=blocker / "sub")
    for s in (1, 2, 3):
        mgr.save(state(s), step=s)
        mgr.wait_for_mirror(10)
    err = capsys.readouterr().err
    assert err.count("Checkpoint mirror") == 1 and "Training continues" in err
    assert names(mgr) == ["step_00000002.pt", "step_00000003.pt"]


def test_hanging_mirror_does_not_block_saves(tmp_path, monkeypatch, capsys):
    release = threading.Event()
    real_copy = ck.shutil.copyfile

    def hang(src, dst):
        release.wait(30)
        return real_copy(src, dst)

    monkeypatch.setattr(ck.shutil, "copyfile", hang)
    mgr = CheckpointManager(tmp_path / "local", keep=3, mirror_dir=tmp_path / "drive")
    for s in (1, 2, 3):
        mgr.save(state(s), step=s)  # returns at once although the first copy hangs
    assert mgr.wait_for_mirror(0.05) is False
    err = capsys.readouterr().err
    assert err.count("Checkpoint mirror") == 1 and "skipped step_00000002.pt" in err
    release.set()
    assert mgr.wait_for_mirror(10)
