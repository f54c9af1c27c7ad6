"""Shared fixtures and collection rules for the dam-book test suite.

`make test` runs one pytest session over ``tests/`` and every committed notebook (with ``--nbval``);
the notebook items are marked ``notebooks`` here so they can be selected (``-m notebooks``) or left out
(``-m "not notebooks"``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SITE_DIR = REPO_ROOT / "_build" / "html"


def committed_notebooks() -> list[Path]:
    """Every notebook the project commits: the chapters and the book's own pages."""
    return sorted((REPO_ROOT / "notebooks").glob("*.ipynb")) + sorted((REPO_ROOT / "book").glob("*.ipynb"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebooks)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def site_dir() -> Path:
    """The built book; the site tests need it and fail (not skip) without it."""
    if not (SITE_DIR / "index.html").is_file():
        pytest.fail(f"{SITE_DIR}/index.html does not exist: build the book first with `make book`")
    return SITE_DIR


@pytest.fixture(scope="session")
def mnist():
    """The verified MNIST data set, loaded once per test session."""
    from dam_utils.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def random_dam():
    """Factory of small untrained DAMs with weights uniform in [-1, 1] (T = 40), for attack/plot tests."""
    import torch

    from dam_utils.model import DAM, N_CLASSES, N_PIXELS

    def make(n: int, K: int = 40, seed: int = 0) -> DAM:
        gen = torch.Generator().manual_seed(seed)
        xi = torch.rand(K, N_PIXELS, generator=gen) * 2 - 1
        return DAM(xi, torch.rand(K, N_CLASSES, generator=gen) * 2 - 1, n, 40.0)

    return make
