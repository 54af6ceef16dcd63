"""Test stand-in for the `google` namespace (only `google.colab` is provided)."""
