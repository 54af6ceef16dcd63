"""Text in, batches out: readers (one per file format, with a cursor), sources (where text
comes from), the preparation pipeline (tokenizer, packed token files), streaming for
corpora larger than memory, and batch samplers."""

from utils.training.legacy_paths import forward_attributes

# `from utils.training.data import prepare_data`: the names of the former data.py, which
# now live in pipeline (re-exporting sources' public names), sources and readers.
_FORWARDS = [forward_attributes(__name__, module) for module in ("pipeline", "sources", "readers")]


def __getattr__(name: str) -> object:
    for forward in _FORWARDS:
        try:
            return forward(name)
        except AttributeError:
            continue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
