"""The shared data folder: unchanged copies of the upstream files the data builders read (see its SOURCES.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hneuron_utils.paths import project_root


def default_shared() -> Path:
    """``$HNEURON_SHARED_DATA``, else the upstream-data folder the maintainers keep beside the repository (its
    sources are listed in data/README.md)."""
    env = os.environ.get("HNEURON_SHARED_DATA")
    return Path(env) if env else project_root().parent / "shared" / "data"


def add_arguments(ap: argparse.ArgumentParser, compared: str = "data/") -> None:
    """The options every builder that reads the shared folder takes: ``--check`` and ``--shared DIR``."""
    ap.add_argument("--check", action="store_true", help=f"rebuild in memory and compare with {compared}")
    ap.add_argument("--shared", type=Path, default=default_shared(), help="shared data folder")
