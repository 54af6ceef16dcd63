"""The tutorial's texts: the medical corpus split into train and held-out test, and a
general-English control text that ships with every Python.

Control text: the prose paragraphs of the Python Language Reference topics bundled in
the standard library (`pydoc_data.topics`, ~0.24 MB after dropping code blocks). It
needs no download and no extra package, in CI, Jupyter or Colab, and it is ordinary
English sentences written for people, not for a medical audience: what a tokenizer
trained on ICD-10-CM has never seen. It is technical English (programming words), so
the tutorial calls it "general English (Python docs)" and says so where it is used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# word-count buckets of a medical description (whitespace words, inclusive bounds)
BUCKETS = (("short (1-5 words)", 1, 5), ("medium (6-12)", 6, 12), ("long (13+)", 13, 10**9))

# terms for the token boxes: common, anatomical and long compound medical words
MEDICAL_TERMS = (
    "hypertension",
    "diabetes mellitus",
    "pneumonia",
    "osteomyelitis",
    "cholecystitis",
    "gastroesophageal reflux",
    "myocardial infarction",
    "thrombocytopenia",
    "hydronephrosis",
    "encephalopathy",
)


@dataclass
class TutorialCorpus:
    train: list[str]  # medical train split: tokenizers are trained on it
    test: list[str]   # medical held-out split: measured, never trained on
    control: list[str]  # general English paragraphs, never trained on
    source: str

    @staticmethod
    def nbytes(texts: list[str]) -> int:
        return sum(len(t.encode("utf-8")) for t in texts)

    def summary(self) -> str:
        rows = [("medical train", self.train), ("medical test", self.test), ("control (English)", self.control)]
        return "\n".join(f"{n:<18} {len(t):>7,} docs {self.nbytes(t) / 1e6:>7.3f} MB" for n, t in rows)


def control_text(max_bytes: int | None = None) -> list[str]:
    """English prose paragraphs from the stdlib's Python Language Reference topics."""
    from pydoc_data.topics import topics

    paras = []
    for key in sorted(topics):
        for p in topics[key].split("\n\n"):
            # keep prose: no indented code/grammar blocks, at least a sentence long
            if p.startswith(" ") or "\n " in p or len(p.split()) < 12:
                continue
            paras.append(" ".join(line.strip() for line in p.splitlines()))
    if max_bytes is not None:
        out, n = [], 0
        for p in paras:
            if n >= max_bytes:
                break
            out.append(p)
            n += len(p.encode("utf-8"))
        paras = out
    return paras


def load_corpus(test_split: float = 0.1, seed: int = 0, max_docs: int | None = None,
                control_bytes: int | None = None, documents: list[str] | None = None) -> TutorialCorpus:
    """Medical documents (default: the built-in ICD-10-CM descriptions) split into train
    and test; `max_docs` takes a seeded sample first (the corpus is ordered by chapter,
    so its head would be one chapter only)."""
    from utils.training.data.pipeline import split_documents
    from utils.training.data.sources import builtin_corpus

    docs = builtin_corpus() if documents is None else list(documents)
    source = "ICD-10-CM descriptions (simple-icd-10-cm)" if documents is None else "given documents"
    if max_docs is not None and max_docs < len(docs):
        idx = sorted(random.Random(seed).sample(range(len(docs)), max_docs))
        docs = [docs[i] for i in idx]
    train, test = split_documents(docs, test_split, seed)
    return TutorialCorpus(train, test, control_text(control_bytes), source)


def load_hf_texts(dataset: str, split: str = "train", column: str = "text", max_docs: int = 2000) -> list[str]:
    """An optional HF dataset as an extra text (online only, e.g. in Colab).
    `dataset` is "name" or "name:config", e.g. "wikitext:wikitext-2-raw-v1"."""
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise ImportError("HF datasets need: pip install datasets") from e
    name, _, config = dataset.partition(":")
    ds = load_dataset(name, config or None, split=f"{split}[:{max_docs}]")
    return [t for t in ds[column] if t and t.strip()]


def bucket_of(text: str) -> str:
    n = len(text.split())
    for name, lo, hi in BUCKETS:
        if lo <= n <= hi:
            return name
    return BUCKETS[0][0]
