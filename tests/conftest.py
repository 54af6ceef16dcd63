"""Shared fixtures. Tests mirror the modules of utils/training/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests never reach the network: W&B and the HF hub stay offline unless a test says otherwise.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (tests/postgres_server.py).
    Skipped with the reason when this machine cannot run one; in CI (CI=true), where
    `make services` installs it, that is a failure instead."""
    from postgres_server import PostgresServer, skip_or_fail, unavailable_reason

    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres_server.create_database()
