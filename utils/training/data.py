"""Text sources: where the documents come from, and the train/val split.

Every source returns a `TextCorpus` (a list of documents plus a name). The built-in
corpus is the default everywhere because it needs no network: the ICD-10-CM
descriptions that the `simple-icd-10-cm` package ships.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field


class DataError(ValueError):
    """Bad input data: the message names the file or field and what is allowed."""


@dataclass
class TextCorpus:
    documents: list[str]
    name: str
    source: str
    synthetic: bool = False
    info: dict = field(default_factory=dict)

    @property
    def num_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in self.documents)


@functools.lru_cache(maxsize=1)
def _builtin_tuple() -> tuple[str, ...]:
    try:
        import simple_icd_10_cm as icd
    except ImportError as e:  # pragma: no cover - installed with the project
        raise ImportError(
            "the builtin corpus needs the simple-icd-10-cm package: pip install simple-icd-10-cm"
        ) from e
    seen: set[str] = set()
    docs: list[str] = []
    for code in icd.get_all_codes(True):
        text = icd.get_description(code).strip()
        if text and text not in seen:
            seen.add(text)
            docs.append(text)
    return tuple(docs)


def builtin_corpus() -> list[str]:
    """The ICD-10-CM descriptions, one document per code, in the code list's order.

    Order: the package's code list (chapters, blocks, categories, subcategories, tabular
    order). Exact duplicate descriptions are dropped (first occurrence kept: 98,505 codes
    give ~97.7k documents, ~7 MB UTF-8) so that no text is in both train and val.
    Parsing the package's XML takes a few seconds once per process; later calls are cached.
    """
    return list(_builtin_tuple())


def split_documents(docs: list[str], validation_split: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic document-level split: a seeded shuffle of the indices, the first
    `validation_split` share goes to val (at least one document when the share is > 0).
    Both halves keep the original document order."""
    if not 0.0 <= validation_split < 1.0:
        raise DataError(f"validation_split must be in [0, 1), got {validation_split}")
    n = len(docs)
    if n == 0:
        raise DataError("cannot split an empty corpus (0 documents)")
    n_val = int(round(n * validation_split))
    if validation_split > 0:
        n_val = max(1, n_val)
    if n_val >= n:
        raise DataError(
            f"validation_split={validation_split} leaves no training documents out of {n}; "
            "use a smaller split or a larger corpus"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val
