"""files.download copies into $FAKE_COLAB_DOWNLOADS; files.upload returns what the test put in
$FAKE_COLAB_UPLOADS (a folder), as Colab does: {filename: bytes}."""

import os
import shutil
from pathlib import Path


def download(filename):
    out = Path(os.environ["FAKE_COLAB_DOWNLOADS"])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(filename, out / Path(filename).name)


def upload():
    folder = os.environ.get("FAKE_COLAB_UPLOADS")
    if not folder:
        return {}
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
