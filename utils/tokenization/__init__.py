"""The tokenizer tutorial's library: texts, the tokenizer zoo, metrics, impact, figures."""
