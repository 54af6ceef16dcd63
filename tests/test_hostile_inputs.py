"""Every `runs` subcommand, `train --config` and `runs import` against the hostile-input
corpus (tests/hostile_corpus.py): exit 2, the file named on stderr, no traceback. In
process (cli.main) for speed; a few through a real subprocess (marked slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_corpus import cases

from utils.training.cli import EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[1]
CASES = cases()


def test_the_corpus_has_at_least_60_damaged_inputs():
    assert len(CASES) >= 60 and len({name for name, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name, make", CASES, ids=[name for name, _ in CASES])
def test_hostile_input_exits_2_naming_the_file(tmp_path, capsys, name, make):
    commands = make(tmp_path)
    capsys.readouterr()  # what making the case printed
    for argv, path in commands:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == EXIT_USAGE, (argv, err)
        assert str(path) in err, (argv, err)
        assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["run_log-config", "db-page3", "import-symlink_to_ours", "config-deep"])
def test_hostile_input_through_a_real_process(tmp_path, name):
    make = dict(CASES)[name]
    for argv, path in make(tmp_path)[:2]:
        r = subprocess.run([sys.executable, "-m", "utils.training", *argv], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
        assert r.returncode == EXIT_USAGE, (argv, r.stderr)
        assert str(path) in r.stderr and "Traceback" not in r.stderr
