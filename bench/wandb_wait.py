"""What a W&B server that accepts connections and never answers costs at the end of a
4-step run: WandbSink's close() with its bound (wandb_timeout_s) against the same sink
waited on without a bound (the start and the finish left to end on their own), side by
side in one run, against one hanging server on 127.0.0.1.

    python bench/wandb_wait.py              # timeouts 1 and 3 s
    python bench/wandb_wait.py --timeouts 2

Prints, per timeout and variant, the seconds close() kept the caller waiting and the
seconds from close()'s return to the end of the process (wandb's exit hooks).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CLIENT = r"""
import atexit, os, sys, time
sys.path.insert(0, os.getcwd())
t0 = time.monotonic()
atexit.register(lambda: print(f"EXIT {time.monotonic() - t0:.3f}", flush=True))  # registered first: runs last
from utils.training.tracking.wandb_logger import WandbSink
timeout_s, bounded = float(sys.argv[1]), sys.argv[3] == "bounded"
sink = WandbSink("p", run_name="hang", mode="online", init_timeout_s=timeout_s, run_dir=sys.argv[2])
sink.start({"tracking": {}})
for step in range(1, 5):  # a 4-step run
    sink.write(step, {"train_loss": 1.0 / step})
print(f"CLOSE {time.monotonic() - t0:.3f}", flush=True)
if not bounded:  # wait for the start to end by itself, then for the finish (join without a timeout)
    sink.wait_ready()
    sink.init_timeout_s = None
sink.close("completed", {})
print(f"CLOSED {time.monotonic() - t0:.3f}", flush=True)
"""


def hanging_server() -> tuple[socket.socket, list[socket.socket]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept_forever():
        while True:
            try:
                held.append(server.accept()[0])  # keep the connection open, say nothing
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    return server, held


def one(port: int, timeout_s: float, variant: str) -> tuple[float, float]:
    env = {**os.environ, "WANDB_BASE_URL": f"http://127.0.0.1:{port}", "WANDB_API_KEY": "x" * 40}
    env.pop("WANDB_MODE", None)
    with tempfile.TemporaryDirectory(prefix="wandb-wait-") as run_dir:
        r = subprocess.run([sys.executable, "-c", CLIENT, str(timeout_s), run_dir, variant], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"{variant} client failed ({r.returncode}):\n{r.stderr[-2000:]}")
    t = {line.split()[0]: float(line.split()[1]) for line in r.stdout.splitlines()
         if line.split() and line.split()[0] in ("CLOSE", "CLOSED", "EXIT")}
    return t["CLOSED"] - t["CLOSE"], t["EXIT"] - t["CLOSED"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeouts", type=float, nargs="+", default=[1.0, 3.0], help="wandb_timeout_s values")
    args = ap.parse_args()
    server, held = hanging_server()
    try:
        print(f"{'wandb_timeout_s':>15} {'variant':>10} {'close wait s':>13} {'exit wait s':>12} {'extra s':>8}")
        for timeout_s in args.timeouts:
            for variant in ("bounded", "unbounded"):
                close_s, exit_s = one(server.getsockname()[1], timeout_s, variant)
                print(f"{timeout_s:>15g} {variant:>10} {close_s:>13.2f} {exit_s:>12.2f} {close_s + exit_s:>8.2f}",
                      flush=True)
    finally:
        server.close()
        for c in held:
            c.close()


if __name__ == "__main__":
    main()
