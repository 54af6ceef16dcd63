"""A bare Colab runtime, played: what a user gets when a notebook's badge opens it.

- The "VM" is a folder holding only the .ipynb (in `notebook/`, the kernel's working
  folder); the clone, the local workspace and the Drive mount point are made inside it
  by the notebook itself, so deleting the folder is the runtime dying.
- "My Drive" is a folder outside the VM, reached through the stand-in `google.colab`
  (tests/notebooks/fake_colab), which is the only thing on the kernel's PYTHONPATH: the
  repository is not, so the set-up cell has to clone it and import the clone.
- `repo_url` is the file:// URL of a temporary clone of this repository's committed HEAD,
  tagged; `repo_ref` is that tag. Installing requirements-training.txt must need nothing
  (PIP_NO_INDEX: pip may not reach an index), as everything is already in this venv.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from utils.notebook_exec import execute_notebook

ROOT = Path(__file__).resolve().parents[2]
FAKE_COLAB = Path(__file__).resolve().parent / "fake_colab"
TAG = "played-colab"


def tagged_clone(folder: Path) -> Path:
    """A clone of this repository's committed HEAD in `folder`, tagged TAG: the GitHub repo."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True)
    subprocess.run(["git", "-C", str(folder), "tag", TAG], check=True)
    return folder


@dataclass
class PlayedColab:
    """One Colab user's world: a runtime (vm) that can die, a Drive and a Downloads folder that stay."""

    base: Path
    origin: Path
    secrets: dict = field(default_factory=dict)

    @property
    def vm(self) -> Path:
        return self.base / "vm"

    @property
    def drive(self) -> Path:
        return self.base / "my-drive"

    @property
    def downloads(self) -> Path:
        return self.base / "downloads"

    @property
    def clone_dir(self) -> Path:
        return self.vm / "slm-notebooks"

    def parameters(self) -> dict:
        """The set-up form's values for this runtime (the rest are the notebook's own)."""
        return {"repo_url": self.origin.as_uri(), "repo_ref": TAG, "clone_dir": str(self.clone_dir)}

    def env(self, **extra: str) -> dict:
        return {
            "PYTHONPATH": str(FAKE_COLAB),  # the kernel's path only: the repository is not on it
            "FAKE_COLAB_DRIVE": str(self.drive),
            "FAKE_COLAB_SECRETS": json.dumps(self.secrets),
            "FAKE_COLAB_DOWNLOADS": str(self.downloads),
            "PIP_NO_INDEX": "1",  # everything is installed already: pip may not need the network
            **extra,
        }

    def run_all(self, notebook: Path, parameters: dict, output: Path, timeout_per_cell: int = 900,
                **env: str) -> nbformat.NotebookNode:
        """Copy the .ipynb alone onto the VM (as opening the badge does) and Run all there."""
        workdir = self.vm / "notebook"
        workdir.mkdir(parents=True, exist_ok=True)
        copy = workdir / notebook.name
        shutil.copy2(notebook, copy)
        return execute_notebook(copy, {**parameters, **self.parameters()}, workdir=workdir, output_path=output,
                                timeout_per_cell=timeout_per_cell, env=self.env(**env))

    def runtime_dies(self) -> None:
        """Everything the VM held goes: the clone, the local workspace and database, the notebook copy."""
        shutil.rmtree(self.vm)


def installed_distributions() -> dict[str, str]:
    """{name: version} of what requirements-training.txt names, as installed in this venv: a
    set-up cell's pip install must leave them as they were (torch and numpy above all).
    Only those: the venv may be shared, and others may install unrelated packages meanwhile."""
    import importlib.metadata
    import re

    wanted = set()
    for line in (ROOT / "requirements-training.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            wanted.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    found = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    assert {"torch", "numpy"} <= wanted <= set(found), sorted(wanted - set(found))
    return {name: found[name] for name in sorted(wanted)}


def outputs(nb, stream: str = "stdout") -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.output_type == "stream" and o.name == stream)


def files_containing(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and needle.encode() in p.read_bytes()]


def played_colab(base: Path, secrets: dict | None = None) -> PlayedColab:
    base.mkdir(parents=True, exist_ok=True)
    origin = tagged_clone(base / "github")
    return PlayedColab(base=base, origin=origin, secrets=dict(secrets or {}))

