"""Where dam-book keeps things on disk.

Every location can be moved with an environment variable, so that a reader who
installs ``dam_utils`` elsewhere (or a GPU machine with a different layout) can
point the code at their own copies.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Cache directory for decoded data sets (``$DAM_DATA_DIR``, default ``<repo>/data``)."""
    return Path(os.environ.get("DAM_DATA_DIR", REPO_ROOT / "data"))


def artifacts_dir() -> Path:
    """Directory of committed heavy results (``$DAM_ARTIFACTS_DIR``, default ``<repo>/artifacts``)."""
    return Path(os.environ.get("DAM_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))
