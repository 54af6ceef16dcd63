# %% [markdown]
# <a id="section-0"></a>
# # Train a small language model
#
# ## 0. Quick start
#
# This notebook trains a small transformer language model on real text. It runs in Colab,
# in Jupyter, or headless (`make run`). The training pieces are being wired in section by
# section; cells that have nothing to do yet say so instead of pretending.

# %% [markdown]
# **How to use it.** Pick the parameters in [section 3](#section-3), then *Runtime > Run all*.
#
# | section | what it does |
# |---|---|
# | [1. Setup and workspace](#section-1) | finds the runtime (CPU, GPU, Colab) |
# | [2. Data](#section-2) | the text the model learns from |
# | [3. Configuration](#section-3) | the parameters form and the workspace folders |
# | [4. Tracking](#section-4) | experiment database and Weights & Biases |
# | [5. Training](#section-5) | the training run |
# | [6. Analysis](#section-6) | curves and comparisons |
# | [7. Export](#section-7) | saving the model |
# | [8. Advanced](#section-8) | hyperparameter search and multi-GPU |

# %%
import time

notebook_started = time.time()
print("notebook started", time.strftime("%Y-%m-%d %H:%M:%S"))

# %% [markdown]
# <a id="section-1"></a>
# ## 1. Setup and workspace
#
# Which machine are we on? The answer decides the preset that makes sense and whether
# Google Drive is available for the workspace.

# %%
import importlib.util
import os
import platform
import sys
from pathlib import Path

# Notebooks run from notebooks/, from the repository root, or from a temp folder with the
# repository on PYTHONPATH; put the root on sys.path so `utils` imports in every case.
for candidate in (Path.cwd(), *Path.cwd().parents):
    if (candidate / "utils" / "__init__.py").exists():
        if str(candidate) not in sys.path:
            sys.path.insert(0, str(candidate))
        break

# %%
import torch

in_colab = importlib.util.find_spec("google.colab") is not None
device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
print(f"torch {torch.__version__}, device {device}, colab {in_colab}")
if device == "cuda":
    print("gpu:", torch.cuda.get_device_name(0))

# %% [markdown]
# The workspace folders are made in [section 3](#section-3), once the parameters say where
# the workspace lives.

# %% [markdown]
# <a id="section-2"></a>
# ## 2. Data
#
# The built-in corpus is medical text that ships with a Python package, so the notebook
# needs no download to train.

# %% [markdown]
# The corpus is the ICD-10-CM code descriptions from the `simple-icd-10-cm` package.

# %%
corpus_available = importlib.util.find_spec("simple_icd_10_cm") is not None
print("built-in corpus package installed:", corpus_available)

# %% [markdown]
# Your own text (a file, a folder, or a Hugging Face dataset) will be selectable here.

# %%
print("data preparation: not wired in yet")

# %% [markdown]
# Tokenization and packing into token files happen once per corpus and are cached in the
# workspace's `datasets/` folder.

# %% [markdown]
# <a id="section-3"></a>
# ## 3. Configuration
#
# The form below is the notebook's parameters cell: headless runs and tests inject their
# values right after it.

# %%
preset = "smoke"  #@param ["smoke", "cpu", "fast", "balanced", "quality"]
workspace_dir = "workspace"  #@param {type:"string"}
run_name = ""  #@param {type:"string"}

# %%
workspace = Path(workspace_dir).expanduser().resolve()
for folder in ("configs", "datasets", "results", "runs"):
    (workspace / folder).mkdir(parents=True, exist_ok=True)
print("workspace:", workspace)

# %%
print(f"preset={preset!r} run_name={run_name or preset!r}")

# %% [markdown]
# <a id="section-4"></a>
# ## 4. Tracking
#
# Runs are recorded in `experiments.db` (SQLite) in the workspace, and in Weights & Biases
# when a key is available.

# %%
print("WANDB_MODE:", os.environ.get("WANDB_MODE", "(unset)"))
print("W&B key in environment:", bool(os.environ.get("WANDB_API_KEY")))

# %% [markdown]
# <a id="section-5"></a>
# ## 5. Training
#
# Checkpoints go to `runs/NAME/checkpoints/`; a run that dies resumes from the last one.

# %% [markdown]
# Live plots of the loss and throughput appear under the training cell.

# %%
run_dir = workspace / "runs" / (run_name or preset)
print("run folder:", run_dir)

# %%
print("training: not wired in yet")

# %% [markdown]
# <a id="section-6"></a>
# ## 6. Analysis
#
# Curves of one run and comparisons between runs, read from the workspace.

# %%
runs = sorted(p.name for p in (workspace / "runs").iterdir() if p.is_dir())
print("runs in workspace:", runs or "none yet")

# %% [markdown]
# Figures are written to the workspace's `results/` folder.

# %%
print("results folder:", workspace / "results")

# %%
print("analysis: not wired in yet")

# %% [markdown]
# <a id="section-7"></a>
# ## 7. Export
#
# The trained model and its tokenizer are saved with `save_pretrained` under `runs/NAME/model/`.

# %% [markdown]
# The exported folder loads with `transformers.AutoModelForCausalLM.from_pretrained`.

# %%
print("export folder:", run_dir / "model")

# %%
print("export: not wired in yet")

# %% [markdown]
# <a id="section-8"></a>
# ## 8. Advanced
#
# Hyperparameter search with Optuna and multi-GPU training with `torchrun`.

# %% [markdown]
# The search writes its study into the workspace's `results/` folder.

# %%
print("hyperparameter search: not wired in yet")

# %%
print(f"notebook finished in {time.time() - notebook_started:.1f} s")
