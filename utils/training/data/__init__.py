"""Text in, batches out: sources and their readers, the preparation pipeline (tokenizer,
packed token files), streaming for corpora larger than memory, and batch samplers."""

from utils.training.legacy_paths import forward_attributes

# `from utils.training.data import prepare_data`: the names of the former data.py
__getattr__ = forward_attributes(__name__, "pipeline")
