# %% [markdown]
# # Tokenizers for medical text: why a domain tokenizer matters
#
# A language model never sees characters: it sees tokens. This tutorial trains tokenizers
# on medical text (the ICD-10-CM code descriptions), compares them with GPT-2's and
# GPT-4's (cl100k) tokenizers and with character and byte baselines, and then trains the
# same small model with two of them to see which one learns the text better.
#
# **Every number shown is measured in this run** (token counts, speeds, training curves)
# or comes from a named public source with its date (API prices, the activation-memory
# formula). Nothing is simulated. Every figure is saved at 300 dpi under
# `WORKSPACE/results/tokenizer_tutorial/` with a text version next to it.

# %%
import sys
import textwrap
import time
import warnings
from pathlib import Path

# tqdm (imported by transformers) warns when ipywidgets is missing; progress bars are off here
warnings.filterwarnings("ignore", message="IProgress not found")

# Run from notebooks/, the repository root, or a temp folder with the root on PYTHONPATH.
for candidate in (Path.cwd(), *Path.cwd().parents):
    if (candidate / "utils" / "__init__.py").exists():
        if str(candidate) not in sys.path:
            sys.path.insert(0, str(candidate))
        break

import pandas as pd

from utils.training.style import caveat, show_figure, show_table

pd.set_option("display.width", 100)
stages = {}  # stage -> seconds, measured below; drawn as the closing pipeline figure
t_stage = time.perf_counter()

# %% [markdown]
# ## Parameters
#
# The defaults take about a minute on a laptop CPU. In Colab, raise `max_docs` to 0 (the
# whole corpus, ~98k descriptions), add hub tokenizers (`"llama,bert,qwen"`) and an HF
# dataset as a second control text (e.g. `"wikitext:wikitext-2-raw-v1"`); both need the
# network and are skipped with a message when it is missing.

# %%
max_docs = 8000  #@param {type:"integer"}
vocab_sizes = "1000,4000"  #@param {type:"string"}
families = "bpe,wordpiece,unigram,sp-unigram"  #@param {type:"string"}
hub_tokenizers = ""  #@param {type:"string"}
hf_dataset = ""  #@param {type:"string"}
train_model_mb = 0.3  #@param {type:"number"}
train_preset = "smoke"  #@param ["smoke", "cpu", "fast"]
train_evals = 5  #@param {type:"integer"}
box_terms = 10  #@param {type:"integer"}
records = 1000000  #@param {type:"integer"}
workspace_dir = "workspace"  #@param {type:"string"}

# %%
from utils.tokenization.corpus import MEDICAL_TERMS, load_corpus, load_hf_texts

out_dir = Path(workspace_dir) / "results" / "tokenizer_tutorial"
out_dir.mkdir(parents=True, exist_ok=True)
corpus = load_corpus(test_split=0.1, seed=0, max_docs=max_docs or None)
texts = {"medical test": corpus.test, "control": corpus.control}
if hf_dataset:
    try:
        texts["hf: " + hf_dataset] = load_hf_texts(hf_dataset)
    except (OSError, ValueError, ConnectionError, ImportError) as e:
        print(f"HF dataset {hf_dataset!r} skipped (needs the network and `datasets`): {e}")
print(corpus.source)
print(corpus.summary())
print("\nmedical examples:", *corpus.test[:3], sep="\n  ")
print("control example:\n ", corpus.control[0][:200])
stages["load texts"] = time.perf_counter() - t_stage

# %% [markdown]
# ## 1. The texts
#
# - **Medical**: the ICD-10-CM descriptions shipped by `simple-icd-10-cm`, one document per
#   code, split 90/10 into train (tokenizers learn from it) and a held-out test (measured).
# - **Control**: English prose paragraphs from the Python Language Reference that ships
#   with every Python (`pydoc_data.topics`). It needs no download, so it works offline in
#   CI as well as in Colab, and it is ordinary English sentences that no medical tokenizer
#   has seen. It is technical English, so it stands for "general English", not for novels.
#
# ## 2. Training tokenizers
#
# Byte-level BPE, WordPiece and Unigram from the `tokenizers` library, and sentencepiece's
# Unigram, each at every vocab size, on the medical train split only.

# %%
from utils.tokenization.fitting import fit_zoo
from utils.tokenization.zoo import baseline_tokenizers, load_hub_tokenizers

t_stage = time.perf_counter()
sizes = [int(v) for v in vocab_sizes.split(",") if v.strip()]
trained, fit_records = fit_zoo(corpus.train, [f.strip() for f in families.split(",") if f.strip()], sizes)
show_table(pd.DataFrame([r.__dict__ for r in fit_records]))
print("(vocab_size: what the trainer returned; a small corpus can stop a Unigram short of the target)")
zoo = trained + baseline_tokenizers(corpus.train)
if hub_tokenizers:
    hub, failed = load_hub_tokenizers([n.strip() for n in hub_tokenizers.split(",") if n.strip()])
    zoo += hub
    for name, why in failed.items():
        print(f"hub tokenizer {name} skipped (online only): {why}")
stages["train tokenizers"] = time.perf_counter() - t_stage

# %% [markdown]
# ## 3. Measurements
#
# On the held-out medical text and on the control text: total tokens, **fertility**
# (tokens per whitespace word), **bytes per token**, the share of words split into
# several tokens, the unknown-token rate, the share of the vocabulary used, and encode
# throughput (MB/s through each tokenizer's batch call, on this machine, now: the median of
# three passes over at least 1 MB, after a warm-up call).

# %%
from utils.tokenization.measure import bucket_table, measure_zoo

t_stage = time.perf_counter()
table, measurements = measure_zoo(zoo, texts)
cols = ["tokenizer", "vocab_size", "tokens", "fertility", "bytes_per_token", "split_word_share",
        "unk_rate", "vocab_use", "encode_mb_s"]
for name in texts:
    print(f"== {name} ==")
    show_table(table[table.text == name][cols])
buckets = bucket_table(measurements, corpus.test)
stages["measure"] = time.perf_counter() - t_stage

# %% [markdown]
# ## 4. Token boxes
#
# How a few tokenizers cut medical terms, each box one token. The rating (1 to 5 stars)
# is each tokenizer's measured bytes per token on the medical test text as a share of the
# best one's.

# %%
from utils.tokenization.token_boxes import token_boxes

t_stage = time.perf_counter()
bpt = {n: measurements[(n, "medical test")].bytes_per_token for n in buckets.index}
largest = {t.family: t for t in trained}  # the largest vocab of each trained family
shown = list(largest.values()) + [t for t in zoo if t not in trained]
fig, text = token_boxes(shown, MEDICAL_TERMS[:box_terms], bpt, out_dir / "token_boxes.png")
show_figure(fig)
print(text)
stages["token boxes"] = time.perf_counter() - t_stage

# %% [markdown]
# ## 5. The real test of a tokenizer
#
# Fewer tokens is not the goal in itself: the goal is a model that predicts the text
# well. We train the same small model twice, once with a BPE trained on the medical text
# and once with GPT-2's tokenizer, on the **same number of training bytes**, and compare
# validation **bits per byte** (perplexity is per token, and tokens differ in size).

# %%
from utils.tokenization.figures import bpb_curves, uniform_bpb
from utils.tokenization.tokenizer_training import compare_tokenizers_by_training, runs_table

t_stage = time.perf_counter()
bpe_vocab = max(sizes)
runs = compare_tokenizers_by_training(
    corpus.train + corpus.test, Path(workspace_dir) / "tokenizer_runs", train_model_mb,
    {f"domain BPE ({bpe_vocab})": {"tokenizer": "bpe", "vocab_size": bpe_vocab},
     "GPT-2 BPE": {"tokenizer": "gpt2"}},
    preset=train_preset, evals=train_evals)
show_table(runs_table(runs), digits=4)
# What each run really consumed (whole optimizer steps, so close to train_model_mb, not equal).
consumed = ", ".join(f"{r.label} {r.train_mb:.3g} MB" for r in runs)
note = caveat(train_preset)
if note:
    note = f"{train_preset} preset: a few steps on a few KB, the comparison is not conclusive"
fig, text = bpb_curves({r.label: r.curve for r in runs}, out_dir / "val_bpb.png",
                       f"Same model ({train_preset} preset), same text budget: {consumed}",
                       baselines={r.label: uniform_bpb(r.vocab_size, r.bytes_per_token) for r in runs}, note=note)
show_figure(fig)
print(f"the numbers: {out_dir / 'val_bpb.txt'}")
stages["train models"] = time.perf_counter() - t_stage

# %% [markdown]
# ## 6. Impact
#
# From the measured per-record token counts, for `records` records like the held-out
# ones:
# - the 95th-percentile sequence length, and the activation memory of a batch of 32 such
#   sequences in a GPT-2-small-shaped model (Korthikanti et al. 2022, eq. 1; 16-bit
#   activations, no recomputation);
# - training tokens per epoch, and hours per epoch at the tokens/s the engine measured in
#   section 5 on this runtime (the domain BPE run; empty when section 5 was skipped);
# - API input cost at a listed price per million tokens (source and date printed below;
#   only cl100k is that model's real tokenizer, the others show what the same rate would
#   cost at their token counts).

# %%
from utils.tokenization.impact import PRICE_SOURCE, PRICES, impact_table

t_stage = time.perf_counter()
tps = runs[0].tokens_per_sec if runs else None
impact = impact_table({n: measurements[(n, "medical test")].per_doc_tokens for n in buckets.index},
                      records=records, tokens_per_sec=tps, price_model="GPT-3.5 Turbo")
show_table(impact)
print(textwrap.fill(f"prices (USD per 1M input tokens): {PRICES}, {PRICE_SOURCE}", 100))
if tps:
    print(textwrap.fill(f"training throughput: {tps:,.0f} tokens/s, measured by the engine in section 5 (the "
                        f"{train_preset} model with the domain BPE); the hours column applies that one speed to every "
                        "tokenizer, although a larger vocabulary trains slower (GPT-2's run above was slower per "
                        "token)", 100))

# %% [markdown]
# ## 7. The dashboard
#
# Nine views in three figures (token counts, what the tokens are, what they cost), all
# from the measurements above.

# %%
from utils.tokenization.figures import dashboard

figs, text = dashboard(table, measurements, buckets, impact, out_dir / "dashboard.png",
                       memory_label="batch 32 at p95 length, GPT-2-small shape", price_model="GPT-3.5 Turbo")
for fig in figs:
    show_figure(fig)
print(f"the numbers: {out_dir / 'dashboard.txt'}")
stages["impact + dashboard"] = time.perf_counter() - t_stage

# %% [markdown]
# ## 8. The pipeline, timed
#
# Where this run's time went.

# %%
from utils.tokenization.figures import pipeline_figure

fig, text = pipeline_figure(stages, out_dir / "pipeline.png")
show_figure(fig)
print(text)
print("figures and their text versions:", *sorted(p.name for p in out_dir.iterdir()), sep="\n  ")
