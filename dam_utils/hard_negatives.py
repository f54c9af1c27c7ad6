"""Hinthorn's hard-negative training with selective dropout (seed 003, §5.3-5.6, Tables 1-3, Fig. 13; appendix B,
experiments E5-E8), and its cache.

Starting from identical copies of the base CNN (:mod:`dam_utils.cnn`), each network is trained by SGD on the
original/adversarial pairs of :mod:`dam_utils.lbfgs_pairs`, "alternating between adversarial examples and their
original counterparts", both labelled with the original digit. One pair per *perturbation group* is withheld
for validation ("including those of size 1"); groups are (source, target) for Table 1 (``both``), the source digit
for Table 2 (``orig``) and the target digit for Table 3 (``adv``). Arms of the grid:

* the **control** ``C``: plain SGD for ``2E`` epochs (the report gives it "double the number of epochs"); the
  same run fills the report's ``C^c`` and ``C^f`` columns;
* **SD_p^l** for p in {0.2, 0.5, 0.7}, l in {conv2 ("c"), fc ("f")}: ``E`` epochs in which, at every pair, only
  the ``ceil(p * width)`` most volatile units of layer l (§6's norm of the activation difference,
  :func:`~dam_utils.selective_dropout.volatility`) move (:func:`~dam_utils.selective_dropout.masked_step`).

Every arm of one (seed, grouping, eta) sees the same split and the same order of pairs (seeded), so arms are
compared on the same draws. The optimiser is the base's Torch-style SGD (momentum 0.9, dampening 0.9, weight
decay 1e-3, inverse-time decay 5e-7 per step), fresh at t = 0, with the initial learning rate eta in
{0.001, 0.003}. Per epoch: accuracy (against the original label) on the withheld adversarials (the tables'
metric), the withheld originals, and the training pairs' originals and adversarials; MNIST test accuracy at the
end of each run (and of the control at ``E``); per unit the number of steps at which it was selected (Fig. 13).

    python -m dam_utils.hard_negatives --workers 2   # cpu preset: 5 seeds x 42 runs, about an hour on 2 cores
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .artifacts import entry
from .cnn import BaseCNN, CNNConfig, load_cnn, torch_sgd
from .data import load_mnist
from .lbfgs_pairs import PAIRS, load_pairs
from .params import PROFILES, Preset, int_field
from .results_cache import StaleResultError, load_result, save_result
from .selective_dropout import masked_step, select_units, volatility

__all__ = ["ARMS", "ETAS", "GROUPINGS", "HARD_NEGATIVES", "METRICS", "SDConfig", "group_keys", "load_hard_negatives",
           "recheck_hard_negatives", "run_arm", "save_hard_negatives", "split_pairs", "train_grid"]

HARD_NEGATIVES = "b_selective_dropout"
#: Groupings of Tables 1, 2, 3: (source, target), source only, target only.
GROUPINGS = ("both", "orig", "adv")
ETAS = (0.001, 0.003)
#: (name, layer, p) in the report's column order; the control has no layer (p = 1).
ARMS: tuple[tuple[str, str | None, float], ...] = (
    ("C", None, 1.0), ("SD0.2c", "conv2", 0.2), ("SD0.5c", "conv2", 0.5), ("SD0.7c", "conv2", 0.7),
    ("SD0.2f", "fc", 0.2), ("SD0.5f", "fc", 0.5), ("SD0.7f", "fc", 0.7))
#: Accuracies recorded per epoch: withheld adversarials / originals, training adversarials / originals.
METRICS = ("val_adv", "val_orig", "train_adv", "train_orig")
WIDTH = {"conv2": 64, "fc": 200}


@dataclass(frozen=True)
class SDConfig(Preset):
    """The grid (module doc): ``epochs`` = E for SD (the control gets ``control_factor`` x E), ``n_seeds`` seeds
    (seed s draws the split and the order of pairs)."""

    epochs: int = int_field(25, 1, 1000)
    control_factor: int = int_field(2, 1, 10)
    n_seeds: int = int_field(5, 1, 100)
    first_seed: int = int_field(0, 0, 2**31 - 1)
    n_test: int = int_field(10000, 1, 10000)  # MNIST test images for the end-of-run accuracy

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {},
                                                     "smoke": {"epochs": 1, "n_seeds": 1, "n_test": 500}}


def group_keys(label: np.ndarray, target: np.ndarray, grouping: str) -> np.ndarray:
    """The perturbation group of every pair (P,): ``10 * source + target``, the source, or the target."""
    return {"both": 10 * label + target, "orig": label, "adv": target}[grouping]


def split_pairs(keys: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One uniformly drawn pair of every group for validation, the rest for training: (val, train) indices."""
    val = np.array([rng.choice(np.flatnonzero(keys == k)) for k in np.unique(keys)])
    return np.sort(val), np.setdiff1d(np.arange(len(keys)), val)


def _accuracy(model: BaseCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean()) if len(x) else float("nan")


def run_arm(base: BaseCNN, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, val: np.ndarray,
            train: np.ndarray, eta: float, layer: str | None, p: float, epochs: int, order_seed: int,
            x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
            test_at: tuple[int, ...] = ()) -> dict[str, Any]:
    """Train a copy of ``base`` on the ``train`` pairs for ``epochs`` (module doc). ``x``, ``x_adv`` (P, 784) in
    [0, 1], ``y`` (P,) original labels; ``layer=None``: the control. Returns per-epoch :data:`METRICS` (epochs,),
    ``test`` {epoch: MNIST test accuracy} for the epochs in ``test_at`` and ``selected`` (width,) counts."""
    model = BaseCNN()
    model.load_state_dict(base.state_dict())
    model.train()
    opt, sched = torch_sgd(model.parameters(), CNNConfig(lr=eta))
    width = 0 if layer is None else WIDTH[layer]
    selected = np.zeros(width, dtype=np.int64)
    order_gen = np.random.default_rng(order_seed)
    tie_gen = torch.Generator().manual_seed(order_seed)
    curves: dict[str, list[float]] = {k: [] for k in METRICS}
    tests: dict[int, float] = {}
    for epoch in range(1, epochs + 1):
        for i in order_gen.permutation(train):
            pair = torch.stack([x_adv[i], x[i]])  # (2, 784): adversarial first, as the report alternates
            units = None  # the control: every unit moves
            if layer is not None:
                with torch.no_grad():
                    a = model.activations(pair)[layer]
                units = select_units(volatility(a[1:], a[:1])[0], p, tie_gen)  # same units for both images
                selected[units.numpy()] += 1
            for j in range(2):
                masked_step(model, opt, layer or "fc", units,
                            lambda xb=pair[j : j + 1], yb=y[i : i + 1]: nn.functional.cross_entropy(model(xb), yb))
                sched.step()
        model.eval()
        for k, (xs, idx) in zip(METRICS, ((x_adv, val), (x, val), (x_adv, train), (x, train)), strict=True):
            curves[k].append(_accuracy(model, xs[idx], y[idx]))
        if epoch in test_at and x_test is not None and y_test is not None:
            tests[epoch] = _accuracy(model, x_test, y_test)
        model.train()
    return {**{k: np.asarray(v) for k, v in curves.items()}, "test": tests, "selected": selected,
            "steps": epochs * len(train)}



def _order_seed(seed: int, grouping: str, eta: float) -> int:
    return 1000 * seed + 10 * GROUPINGS.index(grouping) + ETAS.index(eta)


def _splits(pairs: dict[str, np.ndarray], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The (val, train) split of every grouping for ``seed`` (one generator per grouping, so adding a grouping
    never changes the others)."""
    return {g: split_pairs(group_keys(pairs["label"], pairs["target"], g), np.random.default_rng([seed, i]))
            for i, g in enumerate(GROUPINGS)}


_STATE: dict[str, Any] = {}


def _init_worker(state: dict[str, Any]) -> None:
    torch.set_num_threads(1)  # one image per step: threads only contend
    _STATE.update(state)


def _task(task: tuple[int, str, float, int, int]) -> tuple[tuple[int, str, float, int], dict[str, Any]]:
    seed, grouping, eta, a, epochs = task
    s = _STATE
    val, train = _splits(s["pairs"], seed)[grouping]
    _, layer, p = ARMS[a]
    test_at = (epochs, s["epochs"]) if layer is None else (epochs,)
    res = run_arm(s["base"], s["x"], s["x_adv"], s["y"], val, train, eta, layer, p, epochs,
                  _order_seed(seed, grouping, eta), s["x_test"], s["y_test"], test_at)
    return (seed, grouping, eta, a), res


def train_grid(base: BaseCNN, pairs: dict[str, np.ndarray], cfg: SDConfig, workers: int = 1,
               progress: bool = True) -> dict[str, np.ndarray]:
    """Every arm x eta x grouping x seed of the grid (module doc), run by ``workers`` processes. Arrays indexed
    (seed, grouping, eta, arm, ...) in the order of :data:`GROUPINGS`, :data:`ETAS`, :data:`ARMS`: each of
    :data:`METRICS` (..., control_factor x E) NaN after an SD arm's E epochs; ``test`` (...) MNIST test accuracy at
    the end, ``control_test_E`` (seed, grouping, eta) the control's at E; ``selected`` (..., 200) and ``steps``;
    ``val`` (seed, grouping, P) the withheld pairs."""
    data = load_mnist()
    x = torch.from_numpy(((data.x_train[pairs["index"]] + 1) / 2).numpy())  # (P, 784) originals in [0, 1]
    state = {"base": base, "pairs": pairs, "x": x, "x_adv": torch.from_numpy(pairs["x_adv"]),
             "y": torch.from_numpy(pairs["label"]).long(), "x_test": (data.x_test[: cfg.n_test] + 1) / 2,
             "y_test": data.y_test[: cfg.n_test].long(), "epochs": cfg.epochs}
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.n_seeds)
    tasks = [(s, g, eta, a, cfg.epochs * (cfg.control_factor if ARMS[a][1] is None else 1))
             for s in seeds for g in GROUPINGS for eta in ETAS for a in range(len(ARMS))]
    tasks.sort(key=lambda t: -t[4])  # the long control runs first: better balance across workers
    shape = (cfg.n_seeds, len(GROUPINGS), len(ETAS), len(ARMS))
    out: dict[str, np.ndarray] = {k: np.full((*shape, cfg.epochs * cfg.control_factor), np.nan) for k in METRICS}
    out.update(test=np.full(shape, np.nan), control_test_E=np.full(shape[:3], np.nan),
               selected=np.zeros((*shape, max(WIDTH.values())), np.int64), steps=np.zeros(shape, np.int64),
               val=np.zeros((cfg.n_seeds, len(GROUPINGS), len(pairs["index"])), bool))
    for si, s in enumerate(seeds):
        for gi, (v, _) in enumerate(_splits(pairs, s).values()):
            out["val"][si, gi, v] = True
    bar = tqdm(total=len(tasks), desc="selective dropout grid", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(state,)) as pool:
            results = pool.map(_task, tasks)
            _collect(results, out, cfg, bar)
    else:
        _STATE.update(state)
        _collect(map(_task, tasks), out, cfg, bar)
    bar.close()
    return out


def _collect(results: Any, out: dict[str, np.ndarray], cfg: SDConfig, bar: Any) -> None:
    for (seed, grouping, eta, a), res in results:
        i = (seed - cfg.first_seed, GROUPINGS.index(grouping), ETAS.index(eta), a)
        for k in METRICS:
            out[k][i][: len(res[k])] = res[k]
        n = len(res["val_adv"])
        out["test"][i] = res["test"][n]
        if ARMS[a][1] is None:
            out["control_test_E"][i[:3]] = res["test"][cfg.epochs]
        out["selected"][i][: len(res["selected"])] = res["selected"]
        out["steps"][i] = res["steps"]
        bar.update(1)


def _inputs(root: Path | None = None) -> dict[str, Any]:
    e = entry(PAIRS, root)
    return {"name": PAIRS, "sha256": e["sha256"]}


def save_hard_negatives(grid: dict[str, np.ndarray], cfg: SDConfig, pairs_doc: dict[str, Any], profile: str,
                        wall: float, workers: int, root: Path | None = None) -> dict[str, Any]:
    """Cache the grid with the base CNN's and the pairs' SHA-256 (refused when either changes)."""
    config = {"models": pairs_doc["config"]["models"], "pairs": _inputs(root=root), "grid": cfg.to_dict(),
              "profile": profile, "workers": workers}
    payload = {"groupings": list(GROUPINGS), "etas": list(ETAS), "arms": [a[0] for a in ARMS],
               "metrics": list(METRICS)}
    return save_result(HARD_NEGATIVES, "result-b-selective-dropout", payload, grid, config, wall, "cpu", root)


def load_hard_negatives(root: Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The cached grid and its document; refused (:class:`StaleResultError`) when the base CNN or the pairs
    changed since."""
    doc, arrays = load_result(HARD_NEGATIVES, root)
    now = _inputs(root=root)["sha256"]
    if doc["config"]["pairs"]["sha256"] != now:
        raise StaleResultError(f"the cached {HARD_NEGATIVES} was trained on other pairs (sha256 "
                               f"{doc['config']['pairs']['sha256'][:12]}..., now {now[:12]}...): recompute it with "
                               "`python -m dam_utils.hard_negatives`.")
    assert arrays is not None
    return arrays, doc


def recheck_hard_negatives(grid: dict[str, np.ndarray], doc: dict[str, Any], cells: list[tuple[int, str, float, int]],
                           epochs: int = 2, root: Path | None = None) -> list[dict[str, Any]]:
    """Re-train the first ``epochs`` epochs of each cell (seed, grouping, eta, arm index) from the committed
    inputs and return the cached and recomputed curves and unit counts side by side."""
    cfg = SDConfig(**doc["config"]["grid"])
    pairs, pdoc = load_pairs(root)
    base, _ = load_cnn(pdoc["config"]["models"]["cnn"]["name"], root)
    x = (load_mnist().x_train[pairs["index"]] + 1) / 2
    y = torch.from_numpy(pairs["label"]).long()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the grid ran (one thread per worker)
    try:
        out = []
        for seed, grouping, eta, a in cells:
            val, train = _splits(pairs, seed)[grouping]
            _, layer, p = ARMS[a]
            res = run_arm(base, x, torch.from_numpy(pairs["x_adv"]), y, val, train, eta, layer, p, epochs,
                          _order_seed(seed, grouping, eta))
            i = (seed - cfg.first_seed, GROUPINGS.index(grouping), ETAS.index(eta), a)
            out.append({"cell": (seed, grouping, eta, ARMS[a][0]),
                        "cached": {k: grid[k][i][:epochs] for k in METRICS},
                        "recomputed": {k: res[k] for k in METRICS},
                        "val_same": bool(np.array_equal(np.flatnonzero(grid["val"][i[:2]]), val))})
    finally:
        torch.set_num_threads(threads)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Appendix B: Hinthorn's selective-dropout grid (Tables 1-3).")
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    pairs, pdoc = load_pairs()
    base, _ = load_cnn(pdoc["config"]["models"]["cnn"]["name"])
    cfg = SDConfig.preset(args.profile)
    t0 = time.perf_counter()
    grid = train_grid(base, pairs, cfg, args.workers)
    e = save_hard_negatives(grid, cfg, pdoc, args.profile, time.perf_counter() - t0, args.workers)
    print(f"{e['path']}: {cfg.n_seeds} seeds x {len(GROUPINGS) * len(ETAS) * len(ARMS)} runs, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
