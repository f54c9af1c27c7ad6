"""Shared fixtures and collection rules for the dam-book test suite.

`make test` runs one pytest session over ``tests/`` and every committed notebook (with ``--nbval``);
the notebook items are marked ``notebooks`` here so they can be selected (``-m notebooks``) or left out
(``-m "not notebooks"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from dam_utils.data import Dataset, load_mnist
from dam_utils.model import DAM, N_CLASSES, N_PIXELS
from dam_utils.train import train
from dam_utils.train_config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SITE_DIR = REPO_ROOT / "_build" / "html"

# Debian's Chromium, driven by playwright (never `playwright install`): the site and the Lab tests.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


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
def mnist() -> Dataset:
    """The verified MNIST data set, loaded once per test session."""
    return load_mnist()


@pytest.fixture(scope="session")
def small_model(mnist: Dataset) -> DAM:
    """A DAM_3 with K = 100 trained for 100 minibatches (~2 s, ~10 % test error): a real decision boundary.

    Shared by the attack tests (objectives, rubbish, deform) for the whole session; no test may modify it
    (``DAM.to`` returns a copy)."""
    cfg = TrainConfig.smoke(3, K=100, epochs=10, batches_per_epoch=10, ramp_epochs=0, T_i=30.0, T_f=30.0,
                            init_mean=0.0, init_std=0.1, p=0.9)  # p fixed: the tests read this model
    model = train(cfg, mnist, progress=False, eval_every=0).model
    assert model.error_rate(mnist.x_test[:1000], mnist.y_test[:1000]) < 25.0
    return model


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op torch thread for a module of many tiny tensor ops: faster than a pool, and no
    oversubscription while other jobs share the CPU. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_dam() -> Callable[..., DAM]:
    """Factory of small untrained DAMs with weights uniform in [-1, 1] (T = 40), for attack/plot tests."""

    def make(n: int, K: int = 40, seed: int = 0) -> DAM:
        gen = torch.Generator().manual_seed(seed)
        xi = torch.rand(K, N_PIXELS, generator=gen) * 2 - 1
        return DAM(xi, torch.rand(K, N_CLASSES, generator=gen) * 2 - 1, n, 40.0)

    return make


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `make sysdeps` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415  (optional: only the browser tests need it)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def tiny(mnist, tmp_path_factory):
    """Two smoke-profile models (n = 2, 3) registered as the book models of a fresh artifacts root:
    ``(root, {n: model}, {n: loss power})``. Module-scoped: a test may change that root's manifest."""
    from dam_utils import artifacts  # noqa: PLC0415

    root = tmp_path_factory.mktemp("artifacts")
    models, m = {}, {}
    for n in (2, 3):
        res = train(TrainConfig.smoke(n, K=40, epochs=3), mnist, progress=False)
        artifacts.save_model(res, mnist, root=root)
        models[n], m[n] = res.model, res.config.m
    return root, models, m


def notebook_digests() -> dict[str, str]:
    """SHA-256 of every committed notebook (to prove a test left them byte-identical)."""
    import hashlib  # noqa: PLC0415

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in committed_notebooks()}
