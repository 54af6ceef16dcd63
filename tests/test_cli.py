"""`python -m utils.training`: every command through a real subprocess, on the built-in
corpus with the smoke preset. One workspace per module so the tokenizer and token
files are built once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "utils.training", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-workspace")


def db_rows(ws: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(ws / "experiments.db") as con:
        return con.execute(sql, params).fetchall()


def test_train_then_the_same_command_resumes(workspace):
    # A 0.001 s time limit stops after the first step with a checkpoint (exit 0: stopped early).
    first = cli("train", "--test", "--workspace", str(workspace), "--run-name", "resumable", "--timeout", "0.001",
                "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "stopped_early at step 1" in first.stdout
    ckpts = sorted((workspace / "runs" / "resumable" / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_00000001.pt"]

    second = cli("train", "--test", "--workspace", str(workspace), "--run-name", "resumable", "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "Resuming" in second.stdout and "from step 1" in second.stdout
    assert "completed at step 30" in second.stdout
    # The smoke preset is not a result, and the CLI's last line says so.
    assert second.stdout.strip().splitlines()[-1].endswith("[smoke preset: not a result]")
    run_dir = workspace / "runs" / "resumable"
    for name in ("run.json", "config.json", "metrics_history.json", "text_samples.json", "dashboard.png",
                 "viz/latest.png", "model/config.json", "model/tokenizer.json"):
        assert (run_dir / name).exists(), name
    # One database row for the run, continued across the restart, with metrics up to step 30.
    rows = db_rows(workspace, "SELECT run_id, status FROM runs WHERE run_name = ?", "resumable")
    assert len(rows) == 1 and rows[0][1] == "completed"
    steps = db_rows(workspace, "SELECT MAX(step) FROM metrics WHERE run_id = ? AND name = 'val_loss'", rows[0][0])
    assert steps[0][0] == 30
    log = json.loads((run_dir / "run.json").read_text())
    assert log["status"] == "completed"


def test_predict_prints_the_step_time_table_of_this_run_before_training(workspace):
    r = cli("train", "--test", "--workspace", str(workspace), "--run-name", "predicted", "--predict",
            "--timeout", "0.001", "--no-progress")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("predicted (this run)"))
    assert lines[row - 1].split()[:2] == ["mode", "params"] and "run*" in lines[row - 1]
    parts = next(line for line in lines if line.startswith("mode") and "evaluations" in line)
    assert "checkpoints" in parts and "reports" in parts  # the CLI draws the report every eval_interval
    assert row < next(i for i, line in enumerate(lines) if "stopped_early at step 1" in line)


def test_bad_override_exits_2_naming_the_field(workspace):
    r = cli("train", "--test", "--workspace", str(workspace), "--set", "learning_rate=fast", "--set", "n_layr=2")
    assert r.returncode == 2
    assert "learning_rate" in r.stderr and "n_layr" in r.stderr and "did you mean 'n_layer'" in r.stderr


def test_bad_argument_and_bad_data_exit_2(workspace, tmp_path):
    assert cli("train", "--preset", "huge").returncode == 2
    r = cli("train", "--test", "--workspace", str(workspace), "--run-name", "nodata", "--data-source", "local",
            "--data-path", str(tmp_path / "missing.txt"))
    assert r.returncode == 2
    assert "missing.txt" in r.stderr


def test_config_that_changes_training_refuses_to_resume_with_exit_2(workspace):
    r = cli("train", "--test", "--workspace", str(workspace), "--run-name", "resumable", "--set", "learning_rate=1e-3")
    assert r.returncode == 2
    assert "learning_rate" in r.stderr


def test_ctrl_c_checkpoints_and_exits_130(workspace):
    """The Ctrl-C comes at the end of step 7 (sent by the process to itself, see
    tests/sigint_cli.py), and a teardown callback then fails: still a checkpoint at step
    7, exit 130, and the run marked interrupted."""
    ckpt_dir = workspace / "runs" / "interrupted" / "checkpoints"
    r = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sigint_cli.py"), "7", "--broken-teardown", "train", "--test",
         "--workspace", str(workspace), "--run-name", "interrupted", "--set", "max_steps=100000",
         "--set", "checkpoint_interval=5", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 130, r.stderr
    assert "interrupted" in r.stderr.lower() and "Traceback" not in r.stderr
    assert "teardown failed: KeyError" in r.stderr
    steps = sorted(int(p.stem.split("_")[1]) for p in ckpt_dir.glob("step_*.pt"))
    assert steps == [5, 7]
    status = db_rows(workspace, "SELECT status FROM runs WHERE run_name = ?", "interrupted")
    assert status == [("interrupted",)]
    # Everything logged up to the interrupt is in the database, each step once.
    logged = db_rows(workspace, "SELECT step FROM metrics JOIN runs USING (run_id) WHERE run_name = 'interrupted' "
                                "AND name = 'train_loss' ORDER BY step")
    assert logged == [(5,)]


def test_runs_list_plot_and_compare(workspace, tmp_path):
    listed = cli("runs", "list", "--workspace", str(workspace))
    assert listed.returncode == 0, listed.stderr
    assert "resumable" in listed.stdout

    run_log = workspace / "runs" / "resumable" / "run.json"
    plotted = cli("runs", "plot", str(run_log), "db:resumable", "--workspace", str(workspace), "--out", str(tmp_path))
    assert plotted.returncode == 0, plotted.stderr
    pngs = sorted(tmp_path.glob("*_analysis.png"))
    assert len(pngs) >= 1 and all(p.stat().st_size > 10_000 for p in pngs)

    out = tmp_path / "cmp" / "compare.png"
    compared = cli("runs", "compare", str(run_log), "db:resumable", "--workspace", str(workspace), "--out", str(out))
    assert compared.returncode == 0, compared.stderr
    assert out.exists() and out.with_suffix(".csv").exists() and out.with_suffix(".md").exists()
    assert len(out.with_suffix(".csv").read_text().strip().splitlines()) == 3  # header + 2 runs


def test_runs_with_an_unknown_run_exits_2(workspace):
    r = cli("runs", "plot", "db:nope", "--workspace", str(workspace))
    assert r.returncode != 0
    assert "nope" in r.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_ddp_run(workspace: Path, run_name: str, steps: int) -> None:
    """One DB row and one run log for a run of 2 ranks; rates and tokens count both ranks."""
    rows = db_rows(workspace, "SELECT run_id, status, run_info_json FROM runs WHERE run_name = ?", run_name)
    assert len(rows) == 1 and rows[0][1] == "completed"
    info = json.loads(rows[0][2])
    global_tokens = 8 * 64  # smoke: batch_size 8, block_size 64, accumulation 1: the global batch
    assert info["world_size"] == 2 and info["tokens_per_step"] == global_tokens
    n_logs = db_rows(workspace, "SELECT COUNT(*) FROM metrics WHERE run_id = ? AND name = 'train_loss'", rows[0][0])
    assert n_logs[0][0] == steps // 5  # log_interval 5: one row per log step, not one per rank
    seen = db_rows(workspace, "SELECT MAX(value) FROM metrics WHERE run_id = ? AND name = 'tokens_seen'", rows[0][0])
    assert seen[0][0] == steps * global_tokens
    assert [p.name for p in (workspace / "runs" / run_name).glob("run*.json")] == ["run.json"]


def _clean_teardown(stderr: str) -> None:
    """No rank aborted at exit, and none could have: every rank freed its process group in
    cleanup (a group left alive lets gloo's threads abort the exit now and then, see
    DistributedContext.cleanup; the warning shows it on every run, whatever the timing)."""
    assert "terminate called" not in stderr, stderr[-3000:]
    assert "process group is still referenced" not in stderr, stderr[-3000:]


def test_torchrun_two_processes_on_cpu_logs_once(workspace):
    # The README's command: the smoke preset (accumulation 1) on 2 ranks, 4 sequences each.
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "utils.training", "train", "--preset", "smoke", "--data-source", "builtin", "--workspace",
         str(workspace), "--run-name", "ddp", "--set", "max_steps=10", "--no-progress", "--no-export"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    _clean_teardown(r.stderr)
    assert r.stdout.count("ddp: completed at step 10") == 1
    _one_ddp_run(workspace, "ddp", 10)


def test_torchrun_across_two_nodes_with_c10d_rendezvous(workspace):
    """Two launchers, one per "node" (--nnodes 2 --nproc-per-node 1), meeting through a
    c10d rendezvous on 127.0.0.1: what two machines run, one line each."""
    port = _free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
           "-m", "utils.training", "train", "--test", "--workspace", str(workspace), "--run-name", "twonode",
           "--set", "max_steps=10", "--no-progress", "--no-export"]
    nodes = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outs):
        assert node.returncode == 0, err[-3000:]
        _clean_teardown(err)
    assert sum(out.count("twonode: completed at step 10") for out, _ in outs) == 1  # rank 0 reports, once
    _one_ddp_run(workspace, "twonode", 10)


def test_a_world_size_that_cannot_split_the_batch_exits_2_before_data(tmp_path):
    # smoke: a global batch of 8 sequences; 3 ranks cannot share it.
    r = cli("train", "--test", "--workspace", str(tmp_path), "--run-name", "three", env={"WORLD_SIZE": "3"})
    assert r.returncode == 2, r.stderr
    assert "gradient_accumulation_steps" in r.stderr and "world size of 3" in r.stderr
    assert not (tmp_path / "datasets").exists()


def test_chunk_mode_streams_the_corpus(workspace):
    r = cli("train", "--test", "--workspace", str(workspace), "--run-name", "chunked", "--mode", "chunk",
            "--tokens-per-chunk", "65536", "--max-chunks", "3", "--no-progress", "--no-export", "--viz-interval", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "chunked: completed at step 30" in r.stdout
    (status, info), = db_rows(workspace, "SELECT status, run_info_json FROM runs WHERE run_name = ?", "chunked")
    data = json.loads(info)["data"]
    assert status == "completed" and data["mode"] == "chunk" and data["tokens_per_chunk"] == 65536
    assert data["train_tokens"] is None  # streamed: the corpus size is not known up front


def _runs_cli(*args: str) -> tuple[int, str, str]:
    """`runs plot|compare` in this process (no torch start-up per call)."""
    import contextlib
    import io

    from utils.training.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A run folder as training leaves it: run.json beside config.json and the report's JSON files."""
    import shutil

    from test_run_log import shared_smoke_run

    folder = tmp_path_factory.mktemp("ws") / "runs" / "smoke"
    folder.mkdir(parents=True)
    shutil.copy(shared_smoke_run(), folder / "run.json")
    (folder / "config.json").write_text(json.dumps({"run_name": "smoke", "n_layer": 2}))
    (folder / "metrics_history.json").write_text(json.dumps({"train": [], "eval": []}))
    return folder


def test_runs_plot_takes_a_run_folder(run_folder, tmp_path):
    code, out, err = _runs_cli("runs", "plot", str(run_folder), "--out", str(tmp_path))
    assert code == 0, err
    assert [p.name for p in tmp_path.glob("*.png")] == ["smoke_analysis.png"]


@pytest.mark.parametrize("content, words", [
    (b"", ["not valid JSON"]),
    (b'{"format": "slm-run-log", "train": [{"st', ["not valid JSON"]),
    (b"[1, 2, 3]", ["JSON list, not a run log"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", ["not a text file"]),
    (b'{"format": "slm-run-log", "train": [{"step": 2, "train_loss": "low"}], "eval": []}',
     ["step 2", "train_loss", "'low'", "not a number"]),
])
def test_runs_plot_and_compare_name_a_bad_file_and_exit_2(tmp_path, content, words):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    for command in (["plot", str(bad), "--out", str(tmp_path / "o")], ["compare", str(bad), "--out",
                                                                         str(tmp_path / "c.png")]):
        code, _, err = _runs_cli("runs", *command)
        assert code == 2, err
        assert str(bad) in err and "Traceback" not in err
        for w in words:
            assert w in err


def test_a_folder_with_one_bad_log_plots_the_good_ones_and_lists_the_bad_one(run_folder, tmp_path):
    import shutil

    folder = tmp_path / "logs"
    folder.mkdir()
    shutil.copy(run_folder / "run.json", folder / "good.json")
    (folder / "broken.json").write_text('{"format": "slm-run-log", "train": [')
    code, _, err = _runs_cli("runs", "plot", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert f"skipped: {folder / 'broken.json'}" in err
    assert len(list((tmp_path / "out").glob("*.png"))) == 1


def test_runs_plot_of_an_unknown_db_name_exits_2_naming_it(tmp_path):
    from utils.training.tracking.experiment_db import ExperimentDB

    with ExperimentDB(tmp_path / "experiments.db") as db:
        db.log_run("known", {})
    code, _, err = _runs_cli("runs", "plot", "db:nope", "--workspace", str(tmp_path))
    assert code == 2 and "no run named 'nope'" in err and "Traceback" not in err


def test_doc_split_is_offered_for_files_and_refused_for_other_sources(tmp_path):
    from utils.training.cli import build_parser

    assert build_parser().parse_args(["train", "--doc-split", "line"]).doc_split == "line"
    code, _, err = _runs_cli("train", "--test", "--workspace", str(tmp_path), "--doc-split", "line")
    assert code == 2 and "--doc-split" in err and "'builtin'" in err


def test_trackio_generate_and_export_after_a_smoke_run(tmp_path):
    # issue 26 end to end: the run also goes to a local Trackio project; then the stored run
    # talks (same seed, same text), and exports with a model card and a GGUF file.
    ws = tmp_path / "ws"
    done = cli("train", "--test", "--workspace", str(ws), "--run-name", "talk", "--no-progress",
               "--trackio-project", "cli")
    assert done.returncode == 0, done.stderr
    (trackio_db,) = (ws / "trackio").glob("cli*.db")
    with sqlite3.connect(trackio_db) as con:
        assert {r[0] for r in con.execute("SELECT DISTINCT run_name FROM metrics")} == {"talk"}
    args = ("generate", "--workspace", str(ws), "--run", "talk", "--prompt", "Cholera due to", "--seed", "5",
            "--json")
    first, second = cli(*args), cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["token_ids"] == json.loads(second.stdout)["token_ids"]
    exported = cli("export", "--workspace", str(ws), "--run", "talk", "--gguf", "f16")
    assert exported.returncode == 0, exported.stderr
    card = (ws / "runs" / "talk" / "model" / "README.md").read_text()
    assert "smoke preset: not a result" in card and "![training dashboard](dashboard.png)" in card
    assert (ws / "runs" / "talk" / "model" / "talk-f16.gguf").exists()
