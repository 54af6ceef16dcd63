"""SIGKILL, SIGTERM and SIGINT a real training session at random moments, 20 times, then
check its logs.

One uninterrupted reference run and one run killed again and again, both real
`TrainingSession`s (smoke preset, built-in ICD-10-CM corpus) writing the experiments
database and run.json. Every round forks the killed run (it resumes from its newest
valid checkpoint) and sends SIGKILL at a random moment: a quarter of the kills in
the first 0-2 s (start-up, database open, checkpoint load and resume), the others
0-300 ms after the run passed a random step (a step, an evaluation, a database
flush, a run.json rewrite, a checkpoint write). The random steps spread over the
run so that all kills land before its end. After the last kill the run is started
once more and completes.
Each round's signal is drawn from --signals (default KILL,TERM,INT). A SIGTERM or SIGINT
must end the run the way the command line does (the child installs its stop handlers
first, as `python -m utils.training` does): exit 143 / 130, not death by the signal, and
right after it the run's status in the database and in run.json is `interrupted` when the
process had touched them (a signal that lands before the run is opened leaves them as
they were; counted).
Then, at the SQL level and in run.json, every (metric, step) of the reference run
must be present in the killed run exactly once, with bit-identical values (timing
and memory metrics excepted: they measure the machine, not the run), and the final
weights must be equal.

    .venv/bin/python bench/kill_resume.py             # 20 kills
    .venv/bin/python bench/kill_resume.py --kills 5   # a quick look
    .venv/bin/python bench/kill_resume.py --signals KILL   # SIGKILL only (the first version)

The parent imports torch and transformers and prepares the data once, then forks
the runs (a fresh Python start costs tens of seconds on a busy 2-core machine). It
never runs a multi-threaded op before forking. POSIX only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sqlite3
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first, and bench/ off the path: a script here must never shadow a package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from utils.training.config import TrainingConfig  # noqa: E402
from utils.training.engine import signals  # noqa: E402
from utils.training.io import is_temp_name  # noqa: E402
from utils.training.session import ReportingOptions, TrainingSession  # noqa: E402

# Log every step, evaluate every 6, samples every 10, a checkpoint every 2: many points
# per second to lose, and a checkpoint interval that is a multiple of the log interval
# (a resumed mean over a log interval then covers the same steps).
OVERRIDES = dict(max_steps=120, log_interval=1, eval_interval=6, checkpoint_interval=2, keep_checkpoints=2,
                 sample_interval=10, data_source="builtin")
# They measure the machine, not the run: different in any two runs.
TIMING = ("step_time_ms", "tokens_per_sec", "tokens_per_sec_per_gpu", "elapsed_s", "cpu_rss_gb", "mfu_pct",
          "memory_allocated_gb", "memory_reserved_gb", "memory_peak_gb", "gpu_util_pct", "time", "cpu_pct", "ram_gb",
          "gpu_memory_used_gb", "gpu_power_w", "gpu_temp_c")


def config(name: str) -> TrainingConfig:
    return TrainingConfig.preset("smoke", run_name=name, **OVERRIDES)


def child(workspace: Path, name: str, data) -> None:
    torch.set_num_threads(1)
    session = TrainingSession(config(name), workspace, data=data,
                              tracking=ReportingOptions(progress_bar=False, viz_interval=0))
    try:
        session.train()
    finally:
        session.close()


def fork_run(workspace: Path, name: str, data) -> int:
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = 1
        try:
            signals.install_stop_handlers()  # as the command line does, first thing
            child(workspace, name, data)
            code = 0
        except KeyboardInterrupt as stop:  # SIGINT, or SIGTERM (signals.Terminated)
            code = signals.exit_code(stop)
        finally:
            os._exit(code)
    return pid


def bits(v) -> bytes | None:
    """A float compared bit for bit (NaN included); None stays None (SQLite's NaN)."""
    return None if v is None else struct.pack("<d", float(v))


def db_points(db_path: Path, name: str) -> tuple[dict, int, str]:
    """{(metric, step): value} of run `name`, the number of duplicate rows, and its status."""
    con = sqlite3.connect(db_path)
    try:
        run_id, status = con.execute("SELECT run_id, status FROM runs WHERE run_name = ?", (name,)).fetchone()
        rows = con.execute("SELECT name, step, value FROM metrics WHERE run_id = ?", (run_id,)).fetchall()
        dups = con.execute("SELECT COUNT(*) FROM (SELECT 1 FROM metrics WHERE run_id = ? GROUP BY name, step "
                           "HAVING COUNT(*) > 1)", (run_id,)).fetchone()[0]
        # Artifacts as points too: ("artifact:checkpoint", step) -> its count (must be 1).
        for kind, step, n in con.execute("SELECT kind, step, COUNT(*) FROM artifacts WHERE run_id = ? "
                                         "GROUP BY kind, step", (run_id,)):
            rows.append((f"artifact:{kind}", step, n))
    finally:
        con.close()
    return {(n, s): v for n, s, v in rows}, dups, status


def log_points(run_json: Path) -> tuple[dict, int, dict]:
    """{(kind, key, step): value} of run.json, duplicate steps counted, and its lists."""
    doc = json.loads(run_json.read_text())
    points, dups = {}, 0
    for kind in ("train", "eval"):
        steps = [r["step"] for r in doc[kind]]
        dups += len(steps) - len(set(steps))
        for r in doc[kind]:
            for k, v in r.items():
                if k != "step":
                    points[(kind, k, r["step"])] = v
    lists = {"status": doc["status"], "checkpoints": [c["step"] for c in doc["checkpoints"]],
             "samples": [(s["step"], s["prompt"], s["output"]) for s in doc["samples"]]}
    return points, dups, lists


def compare(ref: dict, got: dict, metric_of) -> tuple[int, list[str]]:
    """(values compared bit for bit, problems)."""
    problems, compared = [], 0
    missing = sorted(set(ref) - set(got), key=str)
    extra = sorted(set(got) - set(ref), key=str)
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} not in the reference, e.g. {extra[:3]}")
    for key in set(ref) & set(got):
        if metric_of(key) in TIMING:
            continue
        compared += 1
        a, b = ref[key], got[key]
        same = (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or \
            (bits(a) == bits(b) if isinstance(a, (int, float)) or a is None else a == b)
        if not same:
            problems.append(f"{key}: {a!r} != {b!r}")
    return compared, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workspace", type=Path, help="default: a new temporary folder")
    ap.add_argument("--signals", default="KILL,TERM,INT", help="the signals drawn from, comma-separated")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    torch.set_num_threads(1)
    ws = a.workspace or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    prep = TrainingSession(config("reference"), ws, tracking=ReportingOptions(progress_bar=False))
    prep.prepare()  # tokenizer and token files, in the parent: every child shares them
    data = prep.data

    t0 = time.monotonic()
    pid = fork_run(ws, "reference", data)
    _, status = os.waitpid(pid, 0)
    ref_wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        print("the reference run failed", file=sys.stderr)
        return 1
    print(f"reference run: {OVERRIDES['max_steps']} steps in {ref_wall:.1f} s (wall, with start-up)", flush=True)

    ckpt_dir = ws / "runs" / "killed" / "checkpoints"
    max_steps = OVERRIDES["max_steps"]

    def newest() -> int:
        names = [p.name for p in ckpt_dir.iterdir()] if ckpt_dir.is_dir() else []
        return max((int(n[5:13]) for n in names if n.startswith("step_") and n.endswith(".pt")), default=0)

    names = [n.strip().upper() for n in a.signals.split(",") if n.strip()]
    kinds = {n: getattr(signal, f"SIG{n}") for n in names}
    sent = dict.fromkeys(names, 0)
    stop_problems, untouched, statuses_checked = [], 0, 0
    interrupt_saves: set[int] = set()  # steps a SIGTERM/SIGINT checkpointed off the interval (allowed extras)
    finished_first = False  # the run reached its end before all signals were sent

    def touched() -> tuple:
        """(the run row's updated_at, run.json's mtime): what a process changes when it opens the run."""
        row = None
        if (ws / "experiments.db").exists():
            con = sqlite3.connect(ws / "experiments.db")
            try:
                row = con.execute("SELECT updated_at FROM runs WHERE run_name = 'killed'").fetchone()
            finally:
                con.close()
        log = ws / "runs" / "killed" / "run.json"
        return (row[0] if row else None, log.stat().st_mtime_ns if log.exists() else None)

    kills, early, mid_checkpoint, completed_early = 0, 0, 0, 0
    while kills < a.kills:
        name = rng.choice(names)
        before = touched()
        pid = fork_run(ws, "killed", data)
        if rng.random() < 0.25:
            # During start-up and resume (database open, checkpoint load, first steps).
            early += 1
            time.sleep(rng.uniform(0.0, 2.0))
        else:
            # Past a random step, then a random 0-300 ms more: mid-step, mid-evaluation,
            # mid-flush, mid-write. Targets spread the remaining steps over the remaining
            # kills, so all of them land before the run's end.
            left = max_steps - newest()
            target = newest() + rng.randint(1, max(1, 2 * left // (a.kills - kills + 1)))
            target = min(target, max_steps - 4)
            deadline = time.monotonic() + 300
            while newest() < target and time.monotonic() < deadline:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.3))
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:  # it ended before the kill: completed, or failed (a resume that did not work)
            completed_early += 1
            code = os.waitstatus_to_exitcode(status)
            print(f"round {kills + completed_early}: the run ended before its kill (exit {code})", flush=True)
            if code == 0:
                finished_first = True
                break
            if completed_early > a.kills:
                break
            continue
        os.kill(pid, kinds[name])
        _, status = os.waitpid(pid, 0)
        kills += 1
        sent[name] += 1
        mid_checkpoint += any(is_temp_name(p.name) for p in ckpt_dir.iterdir()) if ckpt_dir.is_dir() else 0
        note = ""
        if name != "KILL" and os.waitstatus_to_exitcode(status) == 0 and newest() == max_steps:
            # The run finished while the signal was on its way (it lands in the exit): not a stop.
            kills -= 1
            sent[name] -= 1
            completed_early += 1
            print(f"round {kills + completed_early}: the run ended before its SIG{name} (exit 0)", flush=True)
            finished_first = True
            break
        if name != "KILL":  # handled: exit 128 + signal, status interrupted where the run was touched
            code, expected = os.waitstatus_to_exitcode(status), 128 + kinds[name]
            if code != expected:
                stop_problems.append(f"round {kills} SIG{name}: exit {code}, expected {expected}")
            after = touched()
            db_status = db_points(ws / "experiments.db", "killed")[2] if after[0] is not None else None
            log = ws / "runs" / "killed" / "run.json"
            log_status = json.loads(log.read_text())["status"] if after[1] is not None else None
            if after == before:
                untouched += 1
            for what, changed, value in (("database", after[0] != before[0], db_status),
                                         ("run.json", after[1] != before[1], log_status)):
                if changed:
                    statuses_checked += 1
                    if value != "interrupted":
                        stop_problems.append(f"round {kills} SIG{name}: {what} status {value!r}")
            note = f", exit {code}, status {db_status} / {log_status}"
        if name != "KILL" and newest() % OVERRIDES["checkpoint_interval"]:
            interrupt_saves.add(newest())  # the stop's own checkpoint of the step it ended
        print(f"SIG{name} {kills:2d}: newest checkpoint on disk step {newest()}{note}", flush=True)
    pid = fork_run(ws, "killed", data)
    _, status = os.waitpid(pid, 0)
    final_ok = os.waitstatus_to_exitcode(status) == 0
    if not final_ok:
        print("the final resume failed", file=sys.stderr)

    db_ref, _, ref_status = db_points(ws / "experiments.db", "reference")
    db_got, db_dups, got_status = db_points(ws / "experiments.db", "killed")
    for step in interrupt_saves:  # a checkpoint the reference has no reason to write: listed once, not a loss
        db_got.pop(("artifact:checkpoint", step), None)
    n_db, db_problems = compare(db_ref, db_got, lambda k: k[0])
    log_ref, _, ref_lists = log_points(ws / "runs" / "reference" / "run.json")
    log_got, log_dups, got_lists = log_points(ws / "runs" / "killed" / "run.json")
    n_log, log_problems = compare(log_ref, log_got, lambda k: k[1])
    ckpt_steps = [c for c in got_lists["checkpoints"] if c not in interrupt_saves]
    list_problems = []
    if sorted(ckpt_steps) != sorted(set(ref_lists["checkpoints"])):
        list_problems.append(f"run.json checkpoints {ckpt_steps} != {ref_lists['checkpoints']}")
    if got_lists["samples"] != ref_lists["samples"]:
        list_problems.append(f"run.json samples differ: {got_lists['samples']} vs {ref_lists['samples']}")
    final = f"step_{OVERRIDES['max_steps']:08d}.pt"
    w_ref = torch.load(ws / "runs" / "reference" / "checkpoints" / final, weights_only=True)["model"]
    try:
        w_got = torch.load(ckpt_dir / final, weights_only=True)["model"]
        weights_equal = w_ref.keys() == w_got.keys() and all(torch.equal(w_ref[k], w_got[k]) for k in w_ref)
    except FileNotFoundError:
        weights_equal = False

    print()
    print(f"signals:                                    {kills} ({', '.join(f'{n} SIG{k}' for k, n in sent.items())}; "
          f"{early} during start-up or resume, {mid_checkpoint} while a checkpoint was being written; "
          f"{completed_early} runs ended before the signal; {len(interrupt_saves)} stops saved an off-interval "
          "checkpoint of their step, listed once)")
    print(f"SIGTERM/SIGINT: exit codes and statuses:    {statuses_checked} statuses checked right after the signal, "
          f"{untouched} rounds stopped before the run was opened, problems {len(stop_problems)} {stop_problems[:5]}")
    print(f"database rows of the reference run:         {len(db_ref)} (metric, step) points")
    print(f"database: duplicate (metric, step) rows:    {db_dups}")
    print(f"database: values compared bit for bit:      {n_db}, problems {len(db_problems)} {db_problems[:5]}")
    print(f"run.json: duplicate steps:                  {log_dups}")
    print(f"run.json: values compared bit for bit:      {n_log}, problems {len(log_problems)} {log_problems[:5]}")
    print(f"run.json: checkpoints {len(ckpt_steps)} (reference {len(ref_lists['checkpoints'])}) listed once each, "
          f"samples equal: "
          f"{got_lists['samples'] == ref_lists['samples']} ({len(got_lists['samples'])})")
    print(f"status: database {got_status} (reference {ref_status}), run.json {got_lists['status']}")
    print(f"final weights bit-identical to the reference: {weights_equal}")
    if kills < a.kills:
        print(f"{kills} of {a.kills} signals sent: the run reached its end first")
    ok = (final_ok and (kills == a.kills or finished_first) and not stop_problems and not db_problems and not log_problems and not list_problems and db_dups == 0 and log_dups == 0
          and weights_equal and got_status == "completed" and got_lists["status"] == "completed")
    print("PASS" if ok else f"FAIL {list_problems}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
