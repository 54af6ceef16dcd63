"""Checkpoint files: atomic writes, retention, unreadable files skipped, the mirror."""

from __future__ import annotations

import threading

import pytest
import torch

import utils.training.engine.checkpoint as ck
from utils.training.engine.checkpoint import CheckpointManager


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


def test_temp_files_of_the_shared_atomic_write_are_swept(tmp_path):
    from utils.training.io import temp_path

    temp_path(tmp_path / "step_00000005.pt").write_bytes(b"half a checkpoint")  # a kill inside io.atomic_open
    (tmp_path / "step_00000005.pt.sha256").write_text("0" * 64)  # its checksum, written just before
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name, good.name + ".sha256"]
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
    assert sorted(p.name for p in mirror.iterdir()) == ["step_00000002.pt", "step_00000002.pt.sha256",
                                                        "step_00000003.pt", "step_00000003.pt.sha256"]
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


def _flip_byte_in_tensor_data(path, value: float) -> None:
    """Change one stored weight so that torch still loads the file: the silent damage a
    bad disk or a copy gone wrong leaves."""
    import struct

    data = bytearray(path.read_bytes())
    needle = struct.pack("<f", value) * 4
    i = data.find(needle)
    assert i >= 0
    data[i + 2] ^= 0x10
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["step"] is not None  # still loads: only a checksum can tell


def test_a_checksum_is_written_with_each_checkpoint_and_flipped_bytes_are_skipped(tmp_path, capsys):
    mgr = CheckpointManager(tmp_path, keep=3)
    good = mgr.save(state(1, 1.5), step=1)
    newest = mgr.save(state(2, 2.5), step=2)
    digest = ck.checksum_path(newest).read_text().strip()
    assert digest == ck._sha256(newest)  # hashed while written, equal to a hash of the file
    _flip_byte_in_tensor_data(newest, 2.5)
    fresh = CheckpointManager(tmp_path, keep=3)
    assert fresh.latest_valid() == good
    err = capsys.readouterr().err
    assert f"{newest} fails its checksum" in err


def test_orphaned_checksum_of_a_killed_write_is_swept(tmp_path):
    (tmp_path / "step_00000004.pt.sha256").write_text("0" * 64)
    CheckpointManager(tmp_path, keep=2)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_without_its_checksum_still_loads_and_resume_says_it_is_unverified(tmp_path, capsys):
    """Written before checksums existed, or its .sha256 deleted (flipped bytes then go
    unnoticed): it is used, and the resume says so."""
    mgr = CheckpointManager(tmp_path, keep=2)
    path = mgr.save(state(3), step=3)
    ck.checksum_path(path).unlink()
    capsys.readouterr()
    assert CheckpointManager(tmp_path, keep=2).latest_valid() == path
    assert f"Checkpoint {path} has no checksum file (step_00000003.pt.sha256): used unverified" in \
        capsys.readouterr().err
    with_sum = mgr.save(state(4), step=4)
    assert CheckpointManager(tmp_path, keep=2).latest_valid() == with_sum
    assert "unverified" not in capsys.readouterr().err


class _Payload:
    """What a hostile checkpoint carries: an object whose unpickling runs code."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_hostile_and_incomplete_checkpoints_are_refused_and_the_previous_one_used(tmp_path, capsys):
    mgr = CheckpointManager(tmp_path, keep=5, required_keys=("step", "model", "config"))
    good = mgr.save({**state(1), "config": {"run_name": "x"}}, step=1)
    mgr.save({**state(2), "config": {"run_name": "x"}}, step=2)
    torch.save({"step": 2, "evil": _Payload()}, tmp_path / "step_00000002.pt")  # replaced behind our back
    ck.checksum_path(tmp_path / "step_00000002.pt").unlink()  # as if from before checksums
    torch.save({"step": 3, "model": {}}, tmp_path / "step_00000003.pt")  # no config
    assert CheckpointManager(tmp_path, keep=5, required_keys=("step", "model", "config")).latest_valid() == good
    out = capsys.readouterr()
    assert "payload ran" not in out.out + out.err
    assert "step_00000002.pt is refused" in out.err and "step_00000003.pt is incomplete (no config)" in out.err
    assert "weights_only" not in out.err
