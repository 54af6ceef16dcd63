"""Run the README's two-process torchrun command N times; count runs where a rank
did not exit 0 or printed "terminate called" (a C++ thread joinable at teardown).

    python bench/torchrun_teardown.py                 # 20 runs, one core kept busy
    python bench/torchrun_teardown.py -n 30 --busy 2  # both cores busy
    python bench/torchrun_teardown.py --root OLD      # another checkout (e.g. before a fix)

--busy K keeps K spinning processes running for the whole benchmark (default 1): the
abort showed up under load. Every run uses the same workspace (the data cache is built
once) and its own run name. Prints each failure's stderr tail and, at the end,
failures/N.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(root: Path, workspace: Path, name: str) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "utils.training", "train", "--preset", "smoke", "--data-source", "builtin", "--workspace",
           str(workspace), "--run-name", name, "--set", "max_steps=10", "--no-progress", "--no-export"]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    ok = r.returncode == 0 and "terminate called" not in r.stderr and f"{name}: completed at step 10" in r.stdout
    return ok, r.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--busy", type=int, default=1, help="spinning processes kept running (0: no added load)")
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose utils.training runs")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # kill: still stop the spinners (finally)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    failures = 0
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="torchrun-teardown-") as tmp:
            for i in range(args.n):
                ok, err = one_run(args.root, Path(tmp), f"ddp{i}")
                failures += not ok
                print(f"run {i + 1}/{args.n}: {'ok' if ok else 'FAILED'}", flush=True)
                if not ok:
                    print("    " + "\n    ".join(err.strip().splitlines()[-12:]), flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    print(f"failures: {failures}/{args.n} ({args.busy} busy processes; {args.root}; "
          f"{time.perf_counter() - t0:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
