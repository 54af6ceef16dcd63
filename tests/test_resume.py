"""Exact resume: a run stopped and restarted ends with the same parameters, bit for
bit, as one that never stopped; restoring only model and optimizer does not (so the
comparison can fail). Dropout is on, so RNG states matter."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from engine_fixtures import ArrayBatches, ModelAndOptimizerOnly, Zygote, make_tokens, tiny_config

from utils.training.engine.callbacks import TrainerCallback
from utils.training.engine.models import build_model
from utils.training.engine.trainer import Trainer

torch.set_num_threads(1)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, control, **kw):
        if state.step == self.step:
            raise KeyboardInterrupt


def run(run_dir, stop_at=None, cls=Trainer, steps=16, optimizer="adamw", **overrides):
    cfg = tiny_config(max_steps=steps, checkpoint_interval=5, dropout=0.1, optimizer=optimizer, **overrides)
    model = build_model(cfg)
    trainer = cls(cfg, model, ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                  ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size), run_dir=run_dir,
                  callbacks=[StopAt(stop_at)] if stop_at else [], progress_bar=False)
    if stop_at:
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
        return None
    trainer.train()
    return model.state_dict()


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_interrupted_run_resumes_bit_exact_and_partial_restore_diverges(tmp_path, optimizer):
    reference = run(tmp_path / "ref", optimizer=optimizer)
    run(tmp_path / "full", stop_at=7, optimizer=optimizer)
    random.seed(99)
    torch.manual_seed(99)  # the restarted process's RNGs start elsewhere
    assert same(run(tmp_path / "full", optimizer=optimizer), reference)
    run(tmp_path / "partial", stop_at=7, optimizer=optimizer)
    assert not same(run(tmp_path / "partial", cls=ModelAndOptimizerOnly, optimizer=optimizer), reference)


def test_muon_resume_needs_its_momentum(tmp_path):
    """Without Muon's momentum buffers (AdamW's state restored, Muon's fresh) the
    continuation differs: the bit-exact result above depends on saving both."""

    class WithoutMuonState(Trainer):
        def _maybe_resume(self):
            super()._maybe_resume()
            if self.state.resumed_from_step:
                self.optimizer.muon.state.clear()

    reference = run(tmp_path / "ref", optimizer="muon")
    run(tmp_path / "lost", stop_at=7, optimizer="muon")
    assert not same(run(tmp_path / "lost", cls=WithoutMuonState, optimizer="muon"), reference)


def test_muon_in_fp32_resumes_bit_exact_with_its_precision_in_the_checkpoint(tmp_path):
    reference = run(tmp_path / "ref", optimizer="muon", muon_precision="fp32")
    run(tmp_path / "full", stop_at=7, optimizer="muon", muon_precision="fp32")
    saved = torch.load(sorted((tmp_path / "full" / "checkpoints").glob("step_*.pt"))[-1], weights_only=True)
    assert saved["optimizer"]["muon"]["param_groups"][0]["ns_precision"] == "fp32"
    assert same(run(tmp_path / "full", optimizer="muon", muon_precision="fp32"), reference)
    assert not same(reference, run(tmp_path / "bf16", optimizer="muon", muon_precision="bf16"))


def test_a_resume_on_a_cpu_without_bf16_keeps_the_checkpoints_bf16_and_says_so(tmp_path, monkeypatch, capsys):
    """muon_precision auto: bf16 where the checkpoint was written, fp32 where it resumes. The
    checkpoint's precision wins (the continuation is exact), with one line saying so."""
    from utils.training.engine import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    reference = run(tmp_path / "ref", optimizer="muon")
    run(tmp_path / "moved", stop_at=7, optimizer="muon")
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    capsys.readouterr()
    assert same(run(tmp_path / "moved", optimizer="muon"), reference)
    assert "muon_precision: this run's Newton-Schulz iterations ran in bf16; the resume keeps bf16" in \
        capsys.readouterr().out


def _latest_step(ckpt_dir: Path) -> int:
    steps = [int(p.name[5:13]) for p in ckpt_dir.glob("step_*.pt")] if ckpt_dir.is_dir() else []
    return max(steps, default=0)


@pytest.mark.slow
def test_sigkilled_at_random_steps_resumes_bit_exact(tmp_path):
    """Separate processes (forked from a server that imported torch once), each
    SIGKILLed once a checkpoint at a random step exists, i.e. mid-step or mid-write."""
    steps = 40
    server = Zygote()
    try:
        server.start(str(tmp_path / "ref"), "--max-steps", str(steps))
        code, out = server.wait()
        assert code == 0, out
        reference = torch.load(tmp_path / "ref" / "final.pt", weights_only=True)

        run_dir = tmp_path / "killed"
        args = [str(run_dir), "--max-steps", str(steps), "--step-sleep", "0.01"]
        for target in sorted(random.Random(3).sample(range(4, steps - 4), 3)):
            pid = server.start(*args)
            deadline = time.monotonic() + 120
            while _latest_step(run_dir / "checkpoints") < target:
                assert time.monotonic() < deadline, "training did not reach the kill step"
                time.sleep(0.002)
            time.sleep(random.Random(target).uniform(0, 0.02))
            os.kill(pid, signal.SIGKILL)
            code, out = server.wait()
            assert code == -signal.SIGKILL, out
        server.start(*args)
        code, out = server.wait()
    finally:
        server.close()
    assert code == 0, out
    assert any(line.startswith("Resuming tiny from step") for line in out)
    assert f"STATUS completed STEP {steps} TOKENS {steps * 64}" in out
    assert same(torch.load(run_dir / "final.pt", weights_only=True), reference)


# ---------------------------------------------------------------------------------------
# The logs across kills and re-runs: durable before each checkpoint, one row per step
# ---------------------------------------------------------------------------------------


def _tracked(run_dir: Path, db_path: Path, steps: int = 12, callbacks=(), first=()):
    """A trainer with the session's two always-on sinks, both throttled far beyond the
    run's length: only the checkpoint rule can make their data durable in time."""
    import sqlite3  # noqa: F401 - used by the callers' probes

    from utils.training.tracking.db_sink import ExperimentDBSink
    from utils.training.tracking.experiment_db import ExperimentDB
    from utils.training.tracking.metrics import MetricsTracker
    from utils.training.tracking.run_log import RunLogWriter

    cfg = tiny_config(max_steps=steps, checkpoint_interval=3, log_interval=2, eval_interval=4)
    db = ExperimentDB(db_path, flush_s=3600, flush_rows=10**6)
    sinks = [ExperimentDBSink(db, cfg.run_name, cfg.to_dict()), RunLogWriter(run_dir / "run.json", min_interval_s=3600)]
    trainer = Trainer(cfg, build_model(cfg), ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                      ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size), run_dir=run_dir,
                      callbacks=[*first, MetricsTracker(sinks), *callbacks], progress_bar=False)
    return trainer, db


def test_everything_logged_is_durable_before_its_checkpoint_exists(tmp_path):
    import json
    import sqlite3

    seen = {}

    class Probe(TrainerCallback):  # reads the disk as a process started after a SIGKILL here would
        def on_save(self, state, control, **kw):
            with sqlite3.connect(tmp_path / "e.db") as con:
                db_steps = [r[0] for r in con.execute("SELECT step FROM metrics WHERE name = 'train_loss' "
                                                      "ORDER BY step")]
            doc = json.loads((tmp_path / "run" / "run.json").read_text())
            seen[state.step] = (db_steps, [r["step"] for r in doc["train"]], [r["step"] for r in doc["eval"]])

    trainer, db = _tracked(tmp_path / "run", tmp_path / "e.db", callbacks=[Probe()])
    trainer.train()
    db.close()
    assert seen[6] == ([2, 4, 6], [2, 4, 6], [4])
    assert seen[9] == ([2, 4, 6, 8], [2, 4, 6, 8], [4, 8])


def test_a_rerun_of_a_finished_run_logs_each_step_once(tmp_path):
    import json
    import sqlite3

    for _ in range(3):  # the first run, then the same command twice more
        trainer, db = _tracked(tmp_path / "run", tmp_path / "e.db")
        trainer.train()
        db.close()
    with sqlite3.connect(tmp_path / "e.db") as con:
        dup = con.execute("SELECT name, step, COUNT(*) FROM metrics GROUP BY run_id, name, step "
                          "HAVING COUNT(*) > 1").fetchall()
        val_steps = [r[0] for r in con.execute("SELECT step FROM metrics WHERE name = 'val_loss' ORDER BY step")]
        ckpt_rows = con.execute("SELECT step, COUNT(*) FROM artifacts WHERE kind = 'checkpoint' GROUP BY step "
                                "HAVING COUNT(*) > 1").fetchall()
    assert dup == [] and ckpt_rows == []
    assert val_steps == [4, 8, 12]
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [r["step"] for r in doc["eval"]] == [4, 8, 12]
    steps = [c["step"] for c in doc["checkpoints"]]
    assert steps == sorted(set(steps))


def test_a_damaged_newest_checkpoint_is_skipped_and_the_resume_stays_exact(tmp_path, capsys):
    reference = run(tmp_path / "ref")
    run(tmp_path / "full", stop_at=7)  # checkpoints at 5 and 7 (the interrupt's)
    newest = tmp_path / "full" / "checkpoints" / "step_00000007.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x01  # a flipped bit in the middle of the tensor data; torch still loads it
    newest.write_bytes(bytes(data))
    assert torch.load(newest, weights_only=True)["step"] == 7
    assert same(run(tmp_path / "full"), reference)
    err = capsys.readouterr().err
    assert f"{newest} fails its checksum" in err


def state_config(tmp_path) -> dict:
    return tiny_config(max_steps=16, checkpoint_interval=5, dropout=0.1).to_dict()


def test_hostile_and_incomplete_newest_checkpoints_fall_back_to_the_previous_one(tmp_path, capsys):
    reference = run(tmp_path / "ref")
    run(tmp_path / "full", stop_at=7)
    ckpts = tmp_path / "full" / "checkpoints"
    state = torch.load(ckpts / "step_00000007.pt", weights_only=True)
    del state["config"]
    state["step"] = 8
    torch.save(state, ckpts / "step_00000008.pt")  # loads, but lacks what resume needs
    torch.save({"step": 9, "x": ModelAndOptimizerOnly}, ckpts / "step_00000009.pt")  # a class: refused
    (ckpts / "step_00000007.pt").write_bytes(b"PK\x03\x04 truncated")
    state["step"], state["config"] = 10, {**state_config(tmp_path), "learning_rate": "fast"}
    torch.save(state, ckpts / "step_00000010.pt")  # complete, but its config does not validate
    assert same(run(tmp_path / "full"), reference)  # from the checkpoint at step 5
    err = capsys.readouterr().err
    assert "step_00000009.pt is refused" in err and "step_00000008.pt is incomplete (no config)" in err
    assert "step_00000010.pt cannot be used (its saved config is not valid: learning_rate" in err
    assert "weights_only" not in err


def test_the_checkpoint_resumed_from_is_listed_once_even_if_its_on_save_never_ran(tmp_path):
    import json
    import sqlite3

    class DieAfterWriting6(TrainerCallback):  # the process ends between the file and its on_save
        def on_save(self, state, control, **kw):
            if state.step == 6:
                raise KeyboardInterrupt

    trainer, db = _tracked(tmp_path / "run", tmp_path / "e.db", first=[DieAfterWriting6()])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    db.close()
    trainer, db = _tracked(tmp_path / "run", tmp_path / "e.db")
    trainer.train()
    db.close()
    with sqlite3.connect(tmp_path / "e.db") as con:
        steps = [r[0] for r in con.execute("SELECT step FROM artifacts WHERE kind = 'checkpoint' ORDER BY step")]
    assert steps == [3, 6, 9, 12]
    doc = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [c["step"] for c in doc["checkpoints"]] == [3, 6, 9, 12]


class Events(TrainerCallback):
    """The steps of every evaluation and sample set, in order."""

    def __init__(self):
        self.seen = []

    def on_evaluate(self, state, control, **kw):
        self.seen.append(("eval", state.step))

    def on_sample(self, state, control, **kw):
        self.seen.append(("sample", state.step))


class StopInEvaluate(TrainerCallback):
    """A stop signal landing inside step `step`'s sync point: after its evaluation, before
    its samples (the interrupt checkpoint then holds that step)."""

    def __init__(self, step):
        self.step = step

    def on_evaluate(self, state, control, **kw):
        if state.step == self.step:
            raise KeyboardInterrupt


def sync_point_trainer(cfg, run_dir, *callbacks) -> Trainer:
    """The same tiny run (same data, same seed) for the stopped, resumed and reference runs."""
    return Trainer(cfg, build_model(cfg), ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                   ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size), run_dir=run_dir,
                   callbacks=list(callbacks), progress_bar=False)


def test_a_stop_inside_a_sync_point_leaves_no_evaluation_or_samples_out(tmp_path):
    """Found by bench/kill_resume.py with SIGTERM: the samples of the interrupted step were
    never made (the resume continued after the step the interrupt had saved)."""
    cfg = tiny_config(max_steps=12, eval_interval=4, sample_interval=4, checkpoint_interval=5)

    def trainer(run_dir, *callbacks):
        return sync_point_trainer(cfg, run_dir, *callbacks)

    reference = Events()
    trainer(tmp_path / "ref", reference).train()
    first, second = Events(), Events()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "run", first, StopInEvaluate(8)).train()
    assert first.seen[-1] == ("eval", 8) and sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob(
        "*.pt"))[-1] == "step_00000008.pt"  # the interrupt saved step 8, its samples not yet made
    trainer(tmp_path / "run", second).train()
    assert first.seen + second.seen == reference.seen  # every evaluation and sample set once, in order


class InterruptedBatches(ArrayBatches):
    """A stop signal landing inside a step: at draw `at` the position has moved when
    Ctrl-C arrives (the step is half done)."""

    def __init__(self, *args, at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.calls = at, 0

    def next_batch(self):
        batch = super().next_batch()
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return batch


def test_a_stop_inside_a_step_keeps_the_last_checkpoint_and_resumes_exactly(tmp_path):
    """Found by bench/kill_resume.py --seed 3: a SIGINT inside step 30 saved a checkpoint
    "of step 29" whose data position (and weights, mid-update) belonged to step 30; the
    resumed run's final weights differed from the uninterrupted run's."""
    cfg = tiny_config(max_steps=12, checkpoint_interval=5, dropout=0.1)

    def trainer(run_dir, batches):
        return Trainer(cfg, build_model(cfg), batches, ArrayBatches(make_tokens(seed=5), cfg.batch_size,
                                                                  cfg.block_size), run_dir=run_dir, progress_bar=False)

    ref = trainer(tmp_path / "ref", ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1))
    ref.train()
    stopped = trainer(tmp_path / "run", InterruptedBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1,
                                                           at=8))
    with pytest.raises(KeyboardInterrupt):
        stopped.train()
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert ckpts == ["step_00000005.pt"]  # not a "step 7" holding step 8's batch
    again = trainer(tmp_path / "run", ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1))
    again.train()
    assert same(again.raw_model.state_dict(), ref.raw_model.state_dict())


def test_a_stop_inside_the_last_steps_sync_point_leaves_no_evaluation_or_samples_out(tmp_path):
    """bench/kill_resume.py --seed 4: a SIGTERM inside step 120's (the last step's) sync point
    saved it before its samples; the run resumed at its end never made them."""
    cfg = tiny_config(max_steps=12, eval_interval=5, sample_interval=5, checkpoint_interval=5)

    def trainer(run_dir, *callbacks):
        return sync_point_trainer(cfg, run_dir, *callbacks)

    reference = Events()
    trainer(tmp_path / "ref", reference).train()
    first, second = Events(), Events()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "run", first, StopInEvaluate(12)).train()
    trainer(tmp_path / "run", second).train()
    assert first.seen + second.seen == reference.seen and reference.seen[-2:] == [("eval", 12), ("sample", 12)]
    third = Events()
    trainer(tmp_path / "run", third).train()  # a finished run started again: nothing a second time
    assert third.seen == []


class WrappedStop(TrainerCallback):
    """A SIGINT whose KeyboardInterrupt torch wrapped into a RuntimeError (signals.py has
    recorded the signal), at the end of step `step`."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, state, control, **kw):
        if state.step == self.step:
            from utils.training.engine import signals

            signals.received.append(2)
            raise RuntimeError("KeyboardInterrupt raised inside a torch call")


def test_an_error_a_stop_signal_caused_is_the_stop(tmp_path):
    """bench/kill_resume.py --seed 4: a SIGINT ended a run with exit 1 and status failed."""
    from utils.training.engine import signals

    cfg = tiny_config(max_steps=12, checkpoint_interval=5)
    statuses = []

    class Status(TrainerCallback):
        def on_train_end(self, state, control, status=None, **kw):
            statuses.append(status)

    trainer = Trainer(cfg, build_model(cfg), ArrayBatches(make_tokens(), cfg.batch_size, cfg.block_size, seed=1),
                      ArrayBatches(make_tokens(seed=5), cfg.batch_size, cfg.block_size), run_dir=tmp_path,
                      callbacks=[Status(), WrappedStop(7)], progress_bar=False)
    try:
        with pytest.raises(KeyboardInterrupt) as stop:
            trainer.train()
    finally:
        signals.received.clear()
    assert not isinstance(stop.value, signals.Terminated) and isinstance(stop.value.__cause__, RuntimeError)
    assert statuses == ["interrupted"]
    assert (tmp_path / "checkpoints" / "step_00000007.pt").exists()  # the stop's checkpoint of step 7
