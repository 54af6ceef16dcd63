"""Test stand-in for Colab's `google.colab`: drive, userdata and files, driven by env vars."""

from . import _runtime_death, drive, files, userdata  # noqa: F401
