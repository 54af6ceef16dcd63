"""The generated set-up cell (notebooks_src/templates/setup.py) outside a clone: the first
Run all clones repo_url at repo_ref and installs nothing new; a second Run all, after the
ref moved, fetches and checks out the new commit and imports the new code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from played_colab import installed_distributions, tagged_clone

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "notebooks_src" / "templates" / "setup.py"

# Two Run alls of the set-up cell in one interpreter (one kernel), the form values set first.
DRIVER = """
import json, sys
code = open(sys.argv[1]).read()
ns = {"__name__": "__main__", "repo_url": sys.argv[2], "repo_ref": "moving", "clone_dir": sys.argv[3]}
exec(compile(code, "setup", "exec"), ns)
import utils.training
first = (utils.training.__file__, hasattr(utils.training, "MOVED"))
print("READY", flush=True)
input()  # the test moves the branch meanwhile
exec(compile(code, "setup", "exec"), ns)
import utils.training
print(json.dumps({"first": first, "second": (utils.training.__file__, getattr(utils.training, "MOVED", None))}))
"""


@pytest.mark.slow
def test_second_run_all_fetches_and_checks_out_the_moved_ref(tmp_path):
    origin = tagged_clone(tmp_path / "github")
    subprocess.run(["git", "-C", str(origin), "branch", "moving"], check=True)
    clone = tmp_path / "vm" / "slm-notebooks"
    before = installed_distributions()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PIP_NO_INDEX": "1"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(TEMPLATE), origin.as_uri(), str(clone)],
                            cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    printed = []
    while not printed or printed[-1] != "READY\n":  # the first Run all has cloned and imported
        printed.append(proc.stdout.readline())
        assert printed[-1], "the driver ended before the first Run all finished"
    # The ref moves on "GitHub": a new commit on the branch the form names.
    subprocess.run(["git", "-C", str(origin), "checkout", "--quiet", "moving"], check=True)
    init = origin / "utils" / "training" / "__init__.py"
    init.write_text(init.read_text() + "\nMOVED = 'yes'\n")
    subprocess.run(["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet",
                    "-am", "move"], check=True)
    out, _ = proc.communicate("\n", timeout=600)
    assert proc.returncode == 0, out
    lines = "".join(printed + [out]).strip().splitlines()
    result = json.loads(lines[-1])
    assert result["first"] == [str(clone / "utils" / "training" / "__init__.py"), False]
    assert result["second"] == [str(clone / "utils" / "training" / "__init__.py"), "yes"]
    assert sum(f"{origin.as_uri()} at moving" in line for line in lines) == 2
    assert installed_distributions() == before


@pytest.mark.parametrize("field,value", [("repo_url", "--upload-pack=touch PWNED"), ("repo_ref", "-x"),
                                         ("repo_url", "  ")])
def test_a_repo_url_or_ref_git_would_read_as_an_option_is_refused_before_git_runs(tmp_path, field, value):
    form = {"repo_url": "https://github.com/a/b.git", "repo_ref": "main", "clone_dir": str(tmp_path / "c")}
    form[field] = value
    driver = ("import sys\nns = {'__name__': '__main__', **%r}\n"
              "exec(compile(open(sys.argv[1]).read(), 'setup', 'exec'), ns)\n" % form)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PATH": ""}  # no git to run, if it tried
    r = subprocess.run([sys.executable, "-c", driver, str(TEMPLATE)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert f"ValueError: {field} {value!r} must be a repository URL or a ref" in r.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "c").exists()
