"""Text in, batches out: readers (one per file format, with a cursor), sources (where text
comes from), the preparation pipeline (tokenizer, packed token files), streaming for
corpora larger than memory, and batch samplers."""
