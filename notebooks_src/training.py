# %% [markdown]
# <a id="section-0"></a>
# # Train a small language model on real text
#
# ## 0. Quick start
#
# This notebook trains a real transformer language model (GPT-2, LLaMA or Qwen2
# architecture, randomly initialised) on real text, by default the ~98k ICD-10-CM disease
# descriptions that ship with the `simple-icd-10-cm` package, so it works offline. It
# tracks every run in a local SQLite database (and W&B if you want), draws live curves,
# checkpoints so that a dead runtime loses nothing, and ends with a dashboard, an
# exported Hugging Face model and an optional Optuna search.
#
# **Colab:** *Runtime > Change runtime type > GPU*, fill in the forms, then *Runtime > Run
# all*. If the runtime dies, *Run all* again: training continues from the last checkpoint.

# %% [markdown]
# **Contents**
#
# | section | what it does |
# |---|---|
# | [0. Quick start](#section-0) | this overview and the runtime we are on |
# | [1. Setup and workspace](#section-1) | install what is missing, Drive, the experiment database |
# | [2. Data](#section-2) | pick a source, load it, corpus statistics |
# | [3. Configuration](#section-3) | the training form, a summary card, measured step times |
# | [4. Tracking](#section-4) | Weights & Biases (optional; SQLite always) |
# | [5. Training](#section-5) | build, resume or start, train with live curves |
# | [6. Analysis](#section-6) | dashboard, best step, metrics table, hardware |
# | [7. Export](#section-7) | Hugging Face model, artifacts, comparison with earlier runs |
# | [8. Advanced](#section-8) | Optuna hyperparameter search with pruning |
#
# **Requirements:** Python 3.10+, PyTorch 2.1+ (Colab's own is used as it is; nothing
# here reinstalls torch or numpy), about 1 GB of disk for the workspace. A GPU makes the
# larger presets practical; the `smoke` and `cpu` presets run on a laptop CPU.

# %%
# The runtime, before anything is installed: which device, and whether this is Colab.
import importlib.util
import sys
import time

import torch

NOTEBOOK_STARTED = time.time()
try:
    IN_COLAB = importlib.util.find_spec("google.colab") is not None
except ModuleNotFoundError:  # no `google` package at all
    IN_COLAB = False
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, {props.total_memory / 2**30:.1f} GiB x {torch.cuda.device_count()}")
else:
    print("No GPU: training runs on the CPU (use the smoke or cpu preset).")
print(f"Colab: {IN_COLAB} | Python {sys.version.split()[0]} | torch {torch.__version__}")

# %% [markdown]
# <a id="section-1"></a>
# ## 1. Setup and workspace
#
# In Colab this clones the repository at the ref below and installs
# `requirements-training.txt` (which accepts Colab's torch and numpy as they are). The
# workspace holds configs, datasets, results and runs; in Colab it lives on Google Drive
# so it survives the runtime, while the SQLite database and the primary checkpoint files
# stay on the VM's fast local disk and are copied to Drive (database by the SQLite backup
# API, checkpoints by copy and hash check).

# %%
repo_url = "https://github.com/slm-notebooks/slm-notebooks.git"  #@param {type:"string"}
# A tag or commit as repo_ref pins the code, for runs that can be reproduced.
repo_ref = "main"  #@param {type:"string"}
workspace_dir = "workspace"  #@param {type:"string"}
use_drive = True  #@param {type:"boolean"}
drive_folder = "slm-workspace"  #@param {type:"string"}
drive_mount_point = "/content/drive"  #@param {type:"string"}
local_dir = "/content/local-workspace"  #@param {type:"string"}

# %%
# Install only what the runtime lacks, then import the library and check it is whole.
import importlib
import subprocess
from pathlib import Path


def find_repo_root() -> Path | None:
    for candidate in [Path.cwd(), *Path.cwd().parents, *map(Path, sys.path)]:
        if (candidate / "utils" / "training" / "__init__.py").is_file():
            return candidate.resolve()
    return None


REPO_ROOT = find_repo_root()
if REPO_ROOT is None and IN_COLAB:
    target = Path("/content/slm-notebooks")
    if not target.exists():
        subprocess.run(["git", "clone", "--quiet", repo_url, str(target)], check=True)
    else:  # a second Run all: the ref may have moved
        subprocess.run(["git", "-C", str(target), "fetch", "--quiet", "--tags", "origin"], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "--quiet", repo_ref], check=True)
    # torch and numpy are not pinned there: pip keeps Colab's versions.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r",
                    str(target / "requirements-training.txt")], check=True)
    REPO_ROOT = target
if REPO_ROOT is None:
    raise RuntimeError("cannot find the repository (utils/training): run this notebook from a clone, "
                       "or put the clone on PYTHONPATH")
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from transformers.utils import logging as hf_logging  # noqa: E402

import utils.training as lib  # noqa: E402

hf_logging.disable_progress_bar()  # transformers' save/load bars would fill the cells' stderr

missing = []
for name in lib.__all__:
    try:
        getattr(lib, name)
    except (ImportError, AttributeError) as e:
        missing.append(f"{name}: {e}")
if missing:
    raise ImportError("the library is incomplete:\n  " + "\n  ".join(missing))
versions = {m: importlib.import_module(m).__version__ for m in ("torch", "transformers", "tokenizers", "optuna")}
print(f"library at {REPO_ROOT}: {len(lib.__all__)} names import | " + " | ".join(f"{k} {v}" for k, v in versions.items()))

# %%
# The workspace (Drive in Colab, with a local fallback) and the experiment database.
from utils.training import ExperimentDB, detect_runtime
from utils.training.workspace import open_notebook_workspace

RUNTIME = detect_runtime()
print(RUNTIME.describe())
workspace = open_notebook_workspace(workspace_dir, use_drive=use_drive, drive_folder=drive_folder,
                                    mount_point=drive_mount_point, local_dir=local_dir)
print(workspace.describe())
db = ExperimentDB.open_local(workspace.db_path, workspace.db_mirror_path)
recent = db.list_runs()  # newest first
if len(recent):
    print(f"{len(recent)} earlier runs; the newest:")
    print(recent.head(5)[["run_name", "status", "best_val_loss", "best_step", "tokens_seen"]].to_string(index=False))
else:
    print("no earlier runs in this workspace")

# %% [markdown]
# <a id="section-2"></a>
# ## 2. Data
#
# Pick one source. `builtin` (the default) needs no network: ICD-10-CM descriptions, real
# medical text. `hf` loads a Hugging Face dataset (Colab; e.g. `wikitext` /
# `wikitext-2-raw-v1`). `drive` reads files under your Drive workspace, `local` a path on
# this machine, `upload` asks for files in Colab. `synthetic` is random tokens, for tests
# only: its numbers are labelled synthetic everywhere. The tokenizer is a byte-level BPE
# trained on the training split (`bpe`), GPT-2's (`gpt2`) or a hub name.

# %%
data_source = "builtin"  #@param ["builtin", "hf", "drive", "upload", "local", "synthetic"]
hf_dataset = "wikitext"  #@param {type:"string"}
hf_config = "wikitext-2-raw-v1"  #@param {type:"string"}
text_column = ""  #@param {type:"string"}
data_path = ""  #@param {type:"string"}
tokenizer = "bpe"  #@param {type:"string"}
vocab_size = 4096  #@param {type:"integer"}

# %%
# Built-in sources: the ICD-10-CM corpus, or synthetic tokens.
from utils.training import load_source

corpus = None
if data_source in ("builtin", "synthetic"):
    corpus = load_source(data_source)
    print(f"{corpus.name}: {len(corpus.documents):,} documents, {corpus.num_bytes / 1e6:.2f} MB")
else:
    print(f"skipped: data_source is {data_source!r}")

# %%
# A Hugging Face dataset (needs internet; Colab).
if data_source == "hf":
    corpus = load_source("hf", name=hf_dataset, config=hf_config or None, split="train",
                         text_column=text_column or None)
    print(f"{corpus.name}: {len(corpus.documents):,} documents, {corpus.num_bytes / 1e6:.2f} MB")
else:
    print(f"skipped: data_source is {data_source!r}")

# %%
# Files: under the Drive workspace (drive), a local path (local), or uploaded (upload).
if data_source == "drive":
    corpus = load_source("drive", path=data_path, drive_root=str(workspace.root), text_column=text_column or None)
elif data_source == "local":
    corpus = load_source("local", path=data_path, text_column=text_column or None)
elif data_source == "upload":
    corpus = load_source("upload", path=data_path or None, text_column=text_column or None,
                         upload_dir=str(workspace.datasets_dir / "uploads"))
if data_source in ("drive", "local", "upload"):
    print(f"{corpus.name}: {len(corpus.documents):,} documents, {corpus.num_bytes / 1e6:.2f} MB")
else:
    print(f"skipped: data_source is {data_source!r}")

# %%
# Preview: tokenize once (cached under datasets/ by corpus hash) and measure the corpus.
from utils.training import TrainingConfig, prepare_data

data_fields = dict(data_source=data_source, hf_dataset=hf_dataset, hf_config=hf_config, text_column=text_column,
                   data_path=data_path, tokenizer=tokenizer, vocab_size=vocab_size)
preview = prepare_data(TrainingConfig.from_form(**data_fields), workspace.root, corpus=corpus)
stats = preview.stats
label = " (SYNTHETIC: random tokens, not text)" if stats.get("synthetic") else ""
print(f"source {stats['source']}{label}")
print(f"  documents       {stats['documents']:>14,}")
print(f"  bytes           {stats['bytes']:>14,}")
print(f"  tokens          {stats['tokens']:>14,}   (train {stats['train_tokens']:,} / val {stats['val_tokens']:,})")
print(f"  bytes per token {preview.bytes_per_token:>14.3f}   (tokenizer {tokenizer}, vocabulary {preview.vocab_size:,})")
print(f"  unigram entropy {stats['unigram_entropy']:>14.3f}   nats/token: the loss of the best model that ignores context")
for doc in preview.val_documents[:3]:
    print("  e.g.", doc[:100])

# %% [markdown]
# <a id="section-3"></a>
# ## 3. Configuration
#
# A preset sets everything; the fields below override it (`None` keeps the preset's
# value). Every value is validated by `TrainingConfig`: a bad one stops here with the
# field and what is allowed, before anything trains.

# %%
run_name = "notebook-run"  #@param {type:"string"}
preset = "fast"  #@param ["smoke", "cpu", "fast", "balanced", "quality"]
model_family = "llama"  #@param ["llama", "gpt2", "qwen2"]
model_size = ""  #@param ["", "tiny", "small", "medium", "base"]
learning_rate = None  #@param {type:"raw"}
batch_size = None  #@param {type:"raw"}
max_steps = None  #@param {type:"raw"}
epochs = None  #@param {type:"raw"}
warmup_ratio = None  #@param {type:"raw"}
weight_decay = None  #@param {type:"raw"}
max_grad_norm = None  #@param {type:"raw"}
precision = "auto"  #@param ["auto", "fp32", "bf16", "fp16"]
# optimizer: "" keeps the preset's; muon = Muon on the hidden matrices (faster to a given loss), AdamW on the rest
optimizer = ""  #@param ["", "adamw", "muon"]
gradient_accumulation_steps = None  #@param {type:"raw"}
random_seed = 42  #@param {type:"integer"}
log_interval = None  #@param {type:"raw"}
eval_interval = None  #@param {type:"raw"}
checkpoint_interval = None  #@param {type:"raw"}
sample_interval = None  #@param {type:"raw"}
early_stopping_patience = None  #@param {type:"raw"}
viz_interval = 0  #@param {type:"integer"}
time_presets = "fast,balanced"  #@param {type:"string"}

# %%
# Validate the form into a TrainingConfig, then the summary card of this run.
from utils.training import TrainingSession
from utils.training.session import TrackingOptions, format_summary

config = TrainingConfig.from_form(
    preset=preset, model_size=model_size, run_name=run_name, model_family=model_family,
    learning_rate=learning_rate, batch_size=batch_size, max_steps=max_steps, epochs=epochs,
    warmup_ratio=warmup_ratio, weight_decay=weight_decay, max_grad_norm=max_grad_norm, precision=precision,
    optimizer=optimizer,
    gradient_accumulation_steps=gradient_accumulation_steps, random_seed=random_seed,
    log_interval=log_interval, eval_interval=eval_interval, checkpoint_interval=checkpoint_interval,
    sample_interval=sample_interval, early_stopping_patience=early_stopping_patience, **data_fields,
)
config.save(workspace.configs_dir)
session = TrainingSession(config, workspace, db=db, corpus=corpus)
session.prepare()
print(format_summary(session.summary()))

# %%
# Training modes: a few real optimizer steps of each preset's model on this runtime,
# timed, and the full run's time extrapolated from them (not guessed).
from utils.training.timing import format_timings, measure_presets

timings = measure_presets([p.strip() for p in time_presets.split(",") if p.strip()] + [config],
                          vocab_size=session.config.vocab_size)
print(format_timings(timings))

# %% [markdown]
# <a id="section-4"></a>
# ## 4. Tracking
#
# Every metric goes to the SQLite database (the source of truth) and the run's JSON log.
# Weights & Biases is optional: the API key comes from Colab's Secrets (`WANDB_API_KEY`),
# the environment, or a hidden prompt, and is never printed or saved. If W&B cannot be
# reached within its timeout the run goes on offline, and if that fails, without W&B; one
# line says which. A resumed run continues the same W&B run.

# %%
use_wandb = False  #@param {type:"boolean"}
wandb_project = "slm-notebooks"  #@param {type:"string"}
wandb_entity = ""  #@param {type:"string"}
wandb_mode = "online"  #@param ["online", "offline"]
wandb_tags = "notebook"  #@param {type:"string"}
live_plot = True  #@param {type:"boolean"}

# %% [markdown]
# <a id="section-5"></a>
# ## 5. Training
#
# Running this section again on the same workspace resumes from the newest valid
# checkpoint instead of starting over (a config that changed what is trained refuses to
# resume and names the fields). Checkpoints are written atomically every
# `checkpoint_interval` steps, and copied to Drive in Colab.

# %%
# The model, built from the config (random init, SDPA attention).
model = session.model
print(f"{config.model_family}: {session.parameters['total']:,} parameters "
      f"({session.parameters['non_embedding']:,} non-embedding), "
      f"{session.flops_per_token / 1e6:.1f} MFLOPs per token")
print(model.config.__class__.__name__, {k: getattr(model.config, k) for k in ("num_hidden_layers", "hidden_size")
                                       if hasattr(model.config, k)})

# %%
# Set up the run: tracking options, and where training starts (fresh, or resumed).
from utils.training.wandb_logger import resolve_wandb_key

# Colab Secrets, then the environment, then (in Colab) a hidden prompt. Never printed.
wandb_key = resolve_wandb_key(interactive=IN_COLAB) if use_wandb else None
session.tracking = TrackingOptions(
    wandb_api_key=wandb_key,
    wandb_project=wandb_project if use_wandb else "",
    wandb_entity=wandb_entity,
    wandb_mode=wandb_mode,
    wandb_tags=tuple(t.strip() for t in wandb_tags.split(",") if t.strip()),
    live_plot=live_plot,
    viz_interval=viz_interval,
)
print(session.resume_line())

# %%
# Train, with live curves and a progress bar; final evaluation and text samples at the end.
result = session.train()
state = result.state
print(f"{result.status} at step {state.step}: best val_loss {state.best_val_loss:.4f} at step {state.best_step}, "
      f"{state.tokens_seen:,} tokens in {state.elapsed_s:.0f} s")
entropy = session.data.stats["unigram_entropy"]
print(f"val_loss {state.best_val_loss:.3f} against the corpus's unigram entropy {entropy:.3f} nats/token: "
      + ("below it, so the model uses context" if state.best_val_loss < entropy else "not below it yet"))
for sample in session.last_samples():
    print(f"\n> {sample['prompt']}\n{sample['output']}")

# %% [markdown]
# <a id="section-6"></a>
# ## 6. Analysis
#
# Everything below is read back from the experiment database: what you see is what was
# stored, and the same figures can be redrawn later with `python -m utils.training runs plot`.

# %%
# The six-panel dashboard of this run.
from IPython.display import Image, display

from utils.training import TrainingDashboard

dashboard_path = TrainingDashboard.from_db(db, config.run_name).save(session.run_dir / "dashboard.png")
display(Image(filename=str(dashboard_path)))

# %%
# The best step by validation loss.
run_row = db.get_run(config.run_name)
print(f"best val_loss {run_row['best_val_loss']:.4f} at step {run_row['best_step']} "
      f"(run {run_row['run_id']}, status {run_row['status']})")

# %%
# The metrics table, one row per step, saved as CSV.
metrics = db.get_metrics(run_row["run_id"])
table = metrics.pivot_table(index="step", columns="metric_name", values="value").reset_index()
csv_path = workspace.results_dir / f"{config.run_name}_metrics.csv"
table.to_csv(csv_path, index=False)
print(f"{len(table)} steps x {len(table.columns) - 1} metrics -> {csv_path}")
print(table.tail(5).to_string(index=False))

# %%
# Hardware: MFU, throughput and memory over the run (MFU needs a GPU with a known peak).
from utils.training import load_run, plot_run

hardware_path = workspace.results_dir / f"{config.run_name}_analysis.png"
plot_run(load_run(f"db:{config.run_name}", db=db), out_path=hardware_path)
display(Image(filename=str(hardware_path)))

# %% [markdown]
# <a id="section-7"></a>
# ## 7. Export
#
# The model and tokenizer in Hugging Face format (`AutoModelForCausalLM.from_pretrained`
# loads them), with the config, dashboard and metrics collected in one folder.

# %%
download_zip = False  #@param {type:"boolean"}

# %%
# Export, check that the export loads and generates, collect the artifacts.
import shutil

from transformers import AutoModelForCausalLM, AutoTokenizer

export_dir = session.export()
reloaded = AutoModelForCausalLM.from_pretrained(export_dir)
reloaded_tok = AutoTokenizer.from_pretrained(export_dir)
prompt = session.sample_prompts(1)[0]
ids = reloaded_tok(prompt, return_tensors="pt").input_ids
out = reloaded.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=reloaded_tok.eos_token_id)
print(f"reloaded from {export_dir}: {prompt!r} -> {reloaded_tok.decode(out[0][ids.shape[1]:])!r}")
bundle = workspace.results_dir / f"{config.run_name}_artifacts"
bundle.mkdir(parents=True, exist_ok=True)
for path in (session.run_dir / "config.json", dashboard_path, csv_path, hardware_path, session.run_dir / "run.json"):
    if path.exists():
        shutil.copy2(path, bundle / path.name)
shutil.copytree(export_dir, bundle / "model", dirs_exist_ok=True)
print(f"artifacts in {bundle}")
if download_zip:
    archive = shutil.make_archive(str(bundle), "zip", bundle)
    print(f"zipped: {archive}")
    if IN_COLAB:
        from google.colab import files

        files.download(archive)

# %%
# This run against the earlier runs of this workspace (from the database).
from utils.training import compare_runs
from utils.training.analysis import write_summary_table

names = db.list_runs()["run_name"].head(5).tolist()[::-1]  # the 5 newest, this run last
records = [load_run(f"db:{n}", db=db) for n in names]
comparison_path = workspace.results_dir / "comparison.png"
fig, summary = compare_runs(records, out_path=comparison_path)
write_summary_table(summary, comparison_path.with_suffix(".csv"), comparison_path.with_suffix(".md"))
print(summary.to_string(index=False))
display(Image(filename=str(comparison_path)))

# %% [markdown]
# <a id="section-8"></a>
# ## 8. Advanced
#
# An Optuna study over the search space below: TPE sampling, median pruning on the
# validation loss at each evaluation (a pruned trial stops through the training loop's
# control object and still tears down cleanly), and a persistent journal file so an
# interrupted study resumes where it stopped. Each trial is a real training run, linked
# to its row in the experiment database.

# %%
run_search = False  #@param {type:"boolean"}
search_preset = "smoke"  #@param ["smoke", "cpu", "fast"]
n_trials = 8  #@param {type:"integer"}
search_learning_rate = "3e-4:3e-3:log"  #@param {type:"string"}
search_n_layer = "2,4"  #@param {type:"string"}
search_warmup_ratio = ""  #@param {type:"string"}
search_weight_decay = ""  #@param {type:"string"}
study_name = "notebook-study"  #@param {type:"string"}

# %%
# The study, its figures and the best config.
if run_search:
    import optuna

    from utils.training import SearchSpace, run_study
    from utils.training.hpo import write_study_results

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials table below says it all
    # "low:high[:log]" is a range, "a,b" a list of choices, "" leaves the field alone.
    space = SearchSpace.from_form(learning_rate=search_learning_rate, n_layer=search_n_layer,
                                  warmup_ratio=search_warmup_ratio, weight_decay=search_weight_decay)
    base = TrainingConfig.preset(search_preset, **data_fields)
    storage = workspace.results_dir / "hpo" / f"{study_name}.journal"
    study = run_study(base, space, n_trials=n_trials, storage=str(storage), study_name=study_name,
                      workspace_dir=workspace.root, db=db)
    results = write_study_results(study, workspace.results_dir / "hpo" / study_name)
    trials = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration"))
    print(trials.to_string(index=False))
    print(f"{len(study.trials)} trials; best val_loss {study.best_value:.4f} with {study.best_params}")
    best_config = base.replace(**study.best_params, run_name=f"{study_name}-best")
    print("best config:", best_config.save(workspace.configs_dir / f"{study_name}-best.json"))
    for path in results["files"].values():
        if str(path).endswith(".png"):
            display(Image(filename=str(path)))
else:
    print("skipped: set run_search to run the study")

# %% [markdown]
# **Next steps**
#
# - Compare runs from the command line: `python -m utils.training runs compare db:RUN1 db:RUN2 --out cmp.png`.
# - Train the same config without a notebook: `python -m utils.training train --config workspace/configs/<file>.json`;
#   on several GPUs: `torchrun --nproc_per_node 2 -m utils.training train ...`.
# - Run the search with several workers on one study: start `python -m utils.training hpo ... --storage study.journal`
#   in several terminals (see the README for PostgreSQL across machines).
# - Why the tokenizer matters: open `notebooks/tokenizer_tutorial.ipynb`.
