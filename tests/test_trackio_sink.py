"""tracking/trackio_sink.py for real, offline: a local Trackio project in a temporary
folder, through the training loop; after a SIGKILL and a resume every step is there once,
in the same Trackio run, with our metric names and config."""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trackio")
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "engine_fixtures.py"


def train(run_dir: Path, trackio_dir: Path, kill_at: int = 0, max_steps: int = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENGINE_SIGKILL_AT_STEP": str(kill_at), "TRACKIO_SPACE_ID": "someone/should-not-be-used"}
    env.pop("TRACKIO_DIR", None)
    return subprocess.run([sys.executable, str(FIXTURE), str(run_dir), "--max-steps", str(max_steps),
                           "--ckpt-every", "8", "--trackio", str(trackio_dir)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def points(trackio_dir: Path) -> tuple[dict[str, list[int]], set[str], list[dict]]:
    """{metric: [steps]}, the run names and the configs in the project's SQLite file."""
    (db,) = trackio_dir.glob("fixture*.db")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT run_name, step, metrics FROM metrics").fetchall()
        configs = [json.loads(c) for (c,) in con.execute("SELECT config FROM configs")]
    steps = collections.defaultdict(list)
    for _, step, metrics in rows:
        for name in json.loads(metrics):
            steps[name].append(step)
    return {k: sorted(v) for k, v in steps.items()}, {r[0] for r in rows}, configs


def test_after_a_kill_and_a_resume_every_step_is_there_once(tmp_path):
    run_dir, trackio_dir = tmp_path / "run", tmp_path / "trackio"
    # Logs every 5 steps, evaluation (and a flush) every 10, checkpoints every 8: killed at
    # the end of step 21, after step 20 was written to Trackio and before the next
    # checkpoint, so the resume from step 16 logs step 20 again.
    killed = train(run_dir, trackio_dir, kill_at=21)
    assert killed.returncode == -9, killed.stderr
    before, _, _ = points(trackio_dir)
    assert 20 in before["train_loss"] and 20 in before["val_loss"]
    resumed = train(run_dir, trackio_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "STATUS completed STEP 30" in resumed.stdout
    steps, runs, configs = points(trackio_dir)
    assert runs == {"tiny"}  # the same Trackio run, continued
    assert steps["train_loss"] == [5, 10, 15, 20, 25, 30]
    assert steps["val_loss"] == [10, 20, 30]
    assert {"lr", "grad_norm", "tokens_per_sec", "val_accuracy"} <= set(steps)  # our names, unchanged
    assert configs and configs[0]["run_name"] == "tiny" and configs[0]["d_model"] == 32
    # local only: the Space named in the environment was not used
    assert "someone/should-not-be-used" not in resumed.stdout + killed.stdout
    assert f"{trackio_dir} (local)" in killed.stdout


def test_a_missing_project_name_is_refused():
    from utils.training.tracking.trackio_sink import TrackioSink

    with pytest.raises(ValueError, match="trackio_project"):
        TrackioSink("", "run")


def test_the_session_reports_to_trackio_when_asked(tmp_path):
    from tests.engine_fixtures import tiny_config
    from utils.training.session import ReportingOptions, TrainingSession
    from utils.training.tracking.metrics import MetricsTracker
    from utils.training.tracking.trackio_sink import TrackioSink

    def trackio_sinks(options):
        session = TrainingSession(tiny_config(run_name="s"), tmp_path / "ws", tracking=options)
        try:
            tracker = next(cb for cb in session.callbacks() if isinstance(cb, MetricsTracker))
            return [s for s in tracker.sinks if isinstance(s, TrackioSink)]
        finally:
            session.close()

    assert trackio_sinks(ReportingOptions()) == []
    (sink,) = trackio_sinks(ReportingOptions(trackio_project="proj"))
    assert (sink.project, sink.run_name, sink.directory) == ("proj", "s", tmp_path / "ws" / "trackio")
    assert sink.config["run_name"] == "s"


HF_RUN = """
import sys, torch, transformers
sys.path.insert(0, {root!r})
from utils.training import TrainingConfig, build_model, builtin_corpus, train_bpe_tokenizer
from utils.training.hf import ExperimentCallback
from utils.training.tracking.sinks import ReportingOptions
docs = builtin_corpus()[:600]
tok = train_bpe_tokenizer(docs, 300)
ids = torch.tensor([i for row in tok(docs)["input_ids"] for i in row][: 64 * 32]).view(64, 32)
data = [{{"input_ids": x, "labels": x}} for x in ids]
args = transformers.TrainingArguments(output_dir={out!r}, max_steps=4, per_device_train_batch_size=4,
    logging_steps=2, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, run_name="hf-tiny")
cb = ExperimentCallback({db!r}, live_plot=False, dashboard=False,
                        reporting=ReportingOptions(trackio_project="hf", trackio_dir={trackio!r}))
model = build_model(TrainingConfig.preset("smoke", vocab_size=len(tok), block_size=32))
transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
"""


def test_the_hugging_face_callback_reports_to_trackio(tmp_path):
    trackio_dir = tmp_path / "trackio"
    code = HF_RUN.format(root=str(ROOT), out=str(tmp_path / "out"), db=str(tmp_path / "experiments.db"),
                         trackio=str(trackio_dir))
    env = {k: v for k, v in os.environ.items() if k != "TRACKIO_DIR"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    (db,) = trackio_dir.glob("hf*.db")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT run_name, step, metrics FROM metrics").fetchall()
    assert {r[0] for r in rows} == {"hf-tiny"}
    assert sorted(r[1] for r in rows if "train_loss" in json.loads(r[2])) == [2, 4]
