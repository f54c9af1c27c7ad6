"""Transferability between DAM_n models (Krotov & Hopfield 2018, section 5): the experiments of Figs. 5-7.

* **Fig. 5, adversarial transfer** (:func:`adversarial_transfer`): every generating model deforms the
  first ``n_images`` MNIST test images along ``-grad C^second`` (eq. (4)-(5)) to one step behind its decision
  boundary (:func:`dam_utils.deform.deform`, the ``behind`` image); every model then classifies every set.
  The error is the share of images whose predicted label differs from the *clean image's true label* (as in
  the paper, whose footnote 3 explains why the diagonal is ~99 %, not 100 %). Images whose deformation never
  crossed the boundary (failures) stay in the set with their last iterate, as the paper's sets have all 10000
  images; they are counted, and :meth:`TransferResult.table` can leave them out.
* **Fig. 6, rubbish transfer** (:func:`rubbish_transfer`): every generating model deforms Gaussian noise
  into ``n_per_class`` images of each class (:func:`dam_utils.rubbish.generate_rubbish`, one noise image per
  rubbish image); every model reports its confidence Z (:func:`dam_utils.confidence.confidence`) on every
  set, with the paper's single ``beta_sm = 3.2`` and with each tested model's own fitted ``beta_sm``.
* **Fig. 7** is :func:`dam_utils.confidence.confidence_results`; :func:`compute_results` runs all three.

Labels are always argmax of the energy difference D (:meth:`dam_utils.model.DAM.predict`), never argmax of
the saturated outputs tanh(D). The recheck functions (:func:`recheck_transfer`, :func:`recheck_rubbish`)
recompute a random sample of a cached result with the code as it is now. Nothing here writes files: the
cache is :mod:`dam_utils.results_cache`, the tables and figures :mod:`dam_utils.figures_transfer`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .confidence import confidence, confidence_results, outputs_and_predictions
from .deform import DeformConfig, deform
from .model import DAM, N_CLASSES, N_PIXELS
from .paper import BETA_SM_SINGLE
from .provenance import environment_info
from .rubbish import RubbishConfig, generate_rubbish, noise_images

__all__ = [
    "CHAPTER_SIZES",
    "ChapterResults",
    "RubbishTransferResult",
    "TransferResult",
    "adversarial_transfer",
    "compute_results",
    "recheck_rubbish",
    "recheck_transfer",
    "rubbish_transfer",
]

#: Defaults of the chapter's ``n_images`` / ``n_per_class`` per profile (``paper``: the paper's sizes).
CHAPTER_SIZES: dict[str, dict[str, int]] = {
    "paper": {"n_images": 10000, "n_per_class": 100},
    "cpu": {"n_images": 10000, "n_per_class": 100},
    "smoke": {"n_images": 20, "n_per_class": 2},
}


def _labels(model: DAM, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Predicted labels, argmax of D; (N,) int8."""
    return model.predict(x, batch_size=batch_size).cpu().numpy().astype(np.int8)


# ---------------------------------------------------------------------------------------------------------
# Fig. 5
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TransferResult:
    """Fig. 5. Index ``g`` runs over the generating models, ``t`` over the tested ones (both ``n_values``).

    Per image (``N = len(indices)``, test-set positions): ``labels`` (N,) true classes;
    ``predictions[g, t]`` (N,) the label model t gives to generator g's behind image; ``clean_predictions[t]``
    (N,) model t's label of the clean image; ``top[g]``, ``second[g]`` (N,) generator g's first and second
    choice of the clean image; ``crossed[g]`` (N,) whether its deformation crossed the boundary. Samples:
    ``samples[g, s]`` the behind image of test image ``indices[sample_positions[s]]``.
    """

    n_values: list[int]
    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray  # (G, T, N) int8
    clean_predictions: np.ndarray  # (T, N) int8
    top: np.ndarray  # (G, N) int8
    second: np.ndarray  # (G, N) int8
    crossed: np.ndarray  # (G, N) bool
    sample_positions: np.ndarray  # (S,)
    samples: np.ndarray  # (G, S, 784) float32
    clean_error_full: dict[int, float]  # percent, whole test set
    summaries: dict[int, dict[str, Any]]  # deform summary per generator
    config: dict[str, Any]
    wall_time_s: float
    environment: dict[str, Any] = field(default_factory=dict)
    outputs: dict[Any, np.ndarray] = field(default_factory=dict)  # tested key -> (G, N, 10) float64 Y (keep_outputs)
    distances: np.ndarray | None = None  # (G, N) float32 L2 distance clean -> boundary image (NaN: not crossed)

    @property
    def n_images(self) -> int:
        return len(self.indices)

    def table(self, crossed_only: bool = False) -> np.ndarray:
        """Error (percent) of model t on generator g's set, (G, T); ``crossed_only`` leaves out the images whose
        deformation by g failed (NaN if none crossed)."""
        wrong = self.predictions != self.labels[None, None, :]  # (G, T, N)
        if not crossed_only:
            return 100.0 * wrong.mean(2)
        mask = self.crossed[:, None, :]
        cnt = mask.sum(2)
        with np.errstate(invalid="ignore"):
            return np.where(cnt > 0, 100.0 * (wrong & mask).sum(2) / np.maximum(cnt, 1), np.nan)

    def clean_error_subset(self) -> dict[int, float]:
        """Clean error (percent) of each model on the ``n_images`` used here."""
        return {n: 100.0 * float((self.clean_predictions[t] != self.labels).mean())
                for t, n in enumerate(self.n_values)}

    def failures(self) -> dict[int, int]:
        return {n: int((~self.crossed[g]).sum()) for g, n in enumerate(self.n_values)}

    def cell(self, gen: int, test: int, crossed_only: bool = False) -> float:
        return float(self.table(crossed_only)[self.n_values.index(gen), self.n_values.index(test)])

    def select(self, n_values: Sequence[int]) -> TransferResult:
        """The same result restricted to (and ordered by) ``n_values`` (each must be in ``self.n_values``)."""
        idx = [self.n_values.index(int(n)) for n in n_values]
        return TransferResult([int(n) for n in n_values], self.indices, self.labels,
                              self.predictions[np.ix_(idx, idx)], self.clean_predictions[idx], self.top[idx],
                              self.second[idx], self.crossed[idx], self.sample_positions, self.samples[idx],
                              {int(n): self.clean_error_full[int(n)] for n in n_values},
                              {int(n): self.summaries[int(n)] for n in n_values}, self.config, self.wall_time_s,
                              self.environment, distances=None if self.distances is None else self.distances[idx])

    def second_is_truth(self) -> dict[int, float]:
        """Percent of images whose generator's second choice is the true label (footnote 3: ~1 %)."""
        return {n: 100.0 * float((self.second[g] == self.labels).mean()) for g, n in enumerate(self.n_values)}


def adversarial_transfer(
    models: Mapping[int, DAM],
    data: Any,
    n_images: int,
    deform_cfg: DeformConfig | None = None,
    *,
    m: Mapping[int, int],
    n_samples: int = 10,
    keep_outputs: Sequence[Any] = (),
    device: torch.device | str | None = None,
    progress: bool = False,
) -> TransferResult:
    """Fig. 5 on the first ``n_images`` test images: deform with every model, classify with every model.

    ``models``: keyed by n for Fig. 5, or by any name (chapter 5 mixes DAMs and feed-forward networks: any
    :class:`~dam_utils.objectives.Classifier` with ``predict``, ``predict_energy`` and ``error_rate``).
    ``m``: each model's loss power (the attack's objective, eq. (4)). ``deform_cfg`` defaults to the ``cpu``
    preset; ``to_convergence`` is forced off (only the crossing matters). ``n_samples``: behind images kept
    per generator for display (the first ones). ``keep_outputs``: tested models whose outputs ``Y`` on every
    generator's set are kept (``outputs``; a detector's confidence is computed from them). Runs on ``device``
    (default: the first model's).
    """
    t_all = time.perf_counter()
    cfg = (deform_cfg or DeformConfig.cpu()).replace(to_convergence=False)
    n_values = list(models)
    dev = torch.device(device) if device is not None else next(iter(models.values())).device
    N = min(int(n_images), len(data.y_test))
    x = data.x_test[:N].to(dev)
    labels = data.y_test[:N].cpu().numpy().astype(np.int8)
    G = len(n_values)
    preds = np.zeros((G, G, N), np.int8)
    top = np.zeros((G, N), np.int8)
    second = np.zeros((G, N), np.int8)
    crossed = np.zeros((G, N), bool)
    distances = np.full((G, N), np.nan, np.float32)
    S = min(n_samples, N)
    samples = np.zeros((G, S, N_PIXELS), np.float32)
    summaries: dict[Any, dict[str, Any]] = {}
    outputs = {k: np.zeros((G, N, N_CLASSES)) for k in keep_outputs}
    for g, n in enumerate(n_values):
        cpu0 = time.process_time()
        res = deform(models[n], x, m[n], cfg, progress=progress)
        behind = res.behind.to(dev)
        for t, nt in enumerate(n_values):
            if nt in outputs:
                outputs[nt][g], preds[g, t] = outputs_and_predictions(models[nt], behind)
            else:
                preds[g, t] = _labels(models[nt], behind)
        top[g], second[g] = res.top.numpy(), res.second.numpy()
        crossed[g] = res.crossed.numpy()
        dist = (res.boundary.float() - x.cpu().float()).norm(dim=1).numpy()
        distances[g] = np.where(crossed[g], dist, np.nan)
        samples[g] = res.behind[:S].float().numpy()
        summaries[n] = res.summary()
        if progress:
            print(f"fig5: generator n={n} done ({res.wall_time_s:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU)",
                  flush=True)
    clean = np.stack([_labels(models[n], x) for n in n_values])
    full = {n: models[n].error_rate(data.x_test.to(dev), data.y_test) for n in n_values}
    data_name = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}.get(getattr(data, "name", "mnist"), data.name)
    config = {"deform": cfg.to_dict(), "n_images": N, "images": f"first {N} {data_name} test images",
              "n_values": n_values, "m": {str(k): int(v) for k, v in m.items() if k in models}}
    return TransferResult(n_values, np.arange(N), labels, preds, clean, top, second, crossed, np.arange(S),
                          samples, full, summaries, config, time.perf_counter() - t_all, environment_info(dev),
                          outputs, distances)


def recheck_transfer(
    result: TransferResult,
    models: Mapping[int, DAM],
    data: Any,
    n_sample: int = 200,
    seed: int = 0,
    device: torch.device | str | None = None,
    keep_outputs: Sequence[Any] = (),
) -> dict[str, Any]:
    """Recompute ``n_sample`` randomly chosen images (``seed``) of a cached Fig. 5 from scratch with the code
    as it is now, and compare per image with the cache. Returns the chosen test indices, the number of
    (generator, tested, image) labels compared and how many disagree, plus disagreements in crossings
    and second choices, and for the tested models in ``keep_outputs`` the largest difference from the
    cached outputs ``Y``."""
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.choice(result.n_images, size=min(n_sample, result.n_images), replace=False))
    dev = torch.device(device) if device is not None else next(iter(models.values())).device
    x = data.x_test[torch.as_tensor(result.indices[pos])].to(dev)
    cfg = DeformConfig(**result.config["deform"])
    m = {k: result.config["m"][str(k)] for k in result.n_values}
    pred_bad = cross_bad = second_bad = 0
    out_diff = 0.0
    per_cell: dict[str, int] = {}
    for g, n in enumerate(result.n_values):
        res = deform(models[n], x, m[n], cfg)
        behind = res.behind.to(dev)
        cross_bad += int((res.crossed.numpy() != result.crossed[g, pos]).sum())
        second_bad += int((res.second.numpy() != result.second[g, pos]).sum())
        for t, nt in enumerate(result.n_values):
            bad = int((_labels(models[nt], behind) != result.predictions[g, t, pos]).sum())
            per_cell[f"{n}->{nt}"] = bad
            pred_bad += bad
        for k in keep_outputs:
            y, _ = outputs_and_predictions(models[k], behind)
            out_diff = max(out_diff, float(np.abs(y - result.outputs[k][g, pos]).max()))
    compared = len(pos) * len(result.n_values) ** 2
    return {"indices": result.indices[pos].tolist(), "compared": compared, "disagree": pred_bad,
            "disagree_fraction": pred_bad / compared, "per_cell": per_cell,
            "crossed_disagree": cross_bad, "second_disagree": second_bad, "outputs_max_abs_diff": out_diff}


# ---------------------------------------------------------------------------------------------------------
# Fig. 6
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RubbishTransferResult:
    """Fig. 6. ``targets`` (N,) the class each rubbish image was made for (image i: class i % 10);
    ``predictions[g, t]`` (N,) model t's label of generator g's image i; ``z_single[g, t]`` / ``z_own[g, t]``
    (N,) its confidence with ``beta_single`` / with model t's own ``beta_own[t]``. ``samples[g]``: the first
    ``samples_per_class`` images of each class (targets ``sample_targets``)."""

    n_values: list[int]
    n_per_class: int
    beta_single: float
    beta_own: dict[int, float]
    targets: np.ndarray  # (N,)
    predictions: np.ndarray  # (G, T, N) int8
    z_single: np.ndarray  # (G, T, N) float32
    z_own: np.ndarray  # (G, T, N) float32
    status: np.ndarray  # (G, N) int8
    samples: np.ndarray  # (G, S, 784) float32
    sample_targets: np.ndarray  # (S,)
    summaries: dict[int, dict[str, Any]]
    config: dict[str, Any]
    wall_time_s: float
    environment: dict[str, Any] = field(default_factory=dict)

    def mean_confidence(self, own: bool = False) -> np.ndarray:
        """Mean confidence (percent), (G, T)."""
        return 100.0 * (self.z_own if own else self.z_single).astype(np.float64).mean(2)

    def target_rate(self) -> np.ndarray:
        """Percent of each set that the tested model labels as the class it was made for, (G, T)."""
        return 100.0 * (self.predictions == self.targets[None, None, :]).mean(2)

    def cell(self, gen: int, test: int, own: bool = False) -> float:
        return float(self.mean_confidence(own)[self.n_values.index(gen), self.n_values.index(test)])

    def select(self, n_values: Sequence[int]) -> RubbishTransferResult:
        """The same result restricted to (and ordered by) ``n_values``."""
        idx = [self.n_values.index(int(n)) for n in n_values]
        ix = np.ix_(idx, idx)
        return RubbishTransferResult([int(n) for n in n_values], self.n_per_class, self.beta_single,
                                     {int(n): self.beta_own[int(n)] for n in n_values}, self.targets,
                                     self.predictions[ix], self.z_single[ix], self.z_own[ix], self.status[idx],
                                     self.samples[idx], self.sample_targets,
                                     {int(n): self.summaries[int(n)] for n in n_values}, self.config,
                                     self.wall_time_s, self.environment)


def rubbish_transfer(
    models: Mapping[int, DAM],
    n_per_class: int,
    rubbish_cfg: RubbishConfig | None = None,
    *,
    m: Mapping[int, int],
    beta_own: Mapping[int, float],
    beta_single: float = BETA_SM_SINGLE,
    seed: int = 0,
    samples_per_class: int = 3,
    blocks: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> RubbishTransferResult:
    """Fig. 6: ``n_per_class`` rubbish images per class from every model, confidence of every model.

    Image ``i`` (of ``N = 10 n_per_class``) starts from noise image ``i`` of
    :func:`~dam_utils.rubbish.noise_images` ``(N, noise_std, seed)`` and targets class ``i % 10`` (``shared_noise``
    is forced off, as in the paper's data set); every generator starts from the same noise, so the rows differ
    only by the model. ``beta_own``: each tested model's fitted slope (:func:`dam_utils.confidence.fit_beta_sm`);
    ``beta_single``: the paper's 3.2. ``blocks``: compute only the images ``10 b .. 10 b + 9`` of these blocks
    (one per class, exactly the images of the full run: :func:`recheck_rubbish` uses it); the result then
    holds ``10 len(blocks)`` images and its samples are the first ``samples_per_class`` blocks given.
    """
    t_all = time.perf_counter()
    cfg = (rubbish_cfg or RubbishConfig.cpu()).replace(shared_noise=False)
    n_values = [int(n) for n in models]
    dev = torch.device(device) if device is not None else next(iter(models.values())).device
    blocks = list(range(int(n_per_class))) if blocks is None else [int(b) for b in blocks]
    if not blocks or min(blocks) < 0 or max(blocks) >= n_per_class:
        raise ValueError(f"blocks must lie in [0, {n_per_class}), got {blocks}")
    rows = torch.as_tensor([N_CLASSES * b + c for b in blocks for c in range(N_CLASSES)])  # (N,)
    G, N = len(n_values), len(rows)
    preds = np.zeros((G, G, N), np.int8)
    zs = np.zeros((G, G, N), np.float32)
    zo = np.zeros((G, G, N), np.float32)
    status = np.zeros((G, N), np.int8)
    k = min(samples_per_class, len(blocks))
    sample_idx = np.arange(N_CLASSES * k)  # the first k blocks: k images of each class
    samples = np.zeros((G, len(sample_idx), N_PIXELS), np.float32)
    summaries = {}
    for g, n in enumerate(n_values):
        cpu0 = time.process_time()
        dtype = models[n].xi.dtype
        start = noise_images(N_CLASSES * int(n_per_class), cfg.noise_std, seed, cfg.clip, dtype)[rows]  # (N, 784)
        res = generate_rubbish(models[n], m[n], len(blocks), cfg, seed=seed, device=dev, start=start)
        imgs = res.images.to(dev)
        for t, nt in enumerate(n_values):
            y, pred = outputs_and_predictions(models[nt], imgs)  # (N, 10), (N,) argmax of D
            preds[g, t] = pred
            zs[g, t] = confidence(y, beta_single)
            zo[g, t] = confidence(y, float(beta_own[nt]))
        status[g] = res.status.numpy()
        samples[g] = res.images[sample_idx].float().numpy()
        summaries[n] = res.summary()
        if progress:
            print(f"fig6: generator n={n} done ({res.wall_time_s:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU)",
                  flush=True)
    targets = rows.numpy() % N_CLASSES
    config = {"rubbish": cfg.to_dict(), "n_per_class": int(n_per_class), "seed": int(seed),
              "n_values": n_values, "m": {str(k_): int(v) for k_, v in m.items() if k_ in models},
              "beta_single": float(beta_single), "beta_own": {str(k_): float(v) for k_, v in beta_own.items()}}
    if len(blocks) != n_per_class:
        config["blocks"] = blocks
    return RubbishTransferResult(n_values, int(n_per_class), float(beta_single), {int(k_): float(v) for k_, v in
                                 beta_own.items()}, targets, preds, zs, zo, status, samples, targets[sample_idx],
                                 summaries, config, time.perf_counter() - t_all, environment_info(dev))


def recheck_rubbish(
    result: RubbishTransferResult,
    models: Mapping[int, DAM],
    n_blocks: int = 1,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Regenerate a sample of a cached Fig. 6 with the code as it is now, from its stored config and seed.

    Block 0 (the first image of each class, which the cache stores as a sample image) and ``n_blocks - 1``
    more blocks drawn with ``seed`` are regenerated by every generator with :func:`rubbish_transfer`.
    Returns the blocks; per generator, the largest pixel difference and the largest relative L2 distance
    ``|new - cached| / |cached|`` from the cached sample images; the largest confidence differences (beta_single
    and own beta, over every generator/tested pair and image); the labels and stop statuses that disagree, and
    the number of labels compared.
    """
    rng = np.random.default_rng(seed)
    others = rng.choice(np.arange(1, result.n_per_class), size=min(n_blocks - 1, result.n_per_class - 1),
                        replace=False) if n_blocks > 1 else np.array([], dtype=int)
    blocks = [0, *sorted(int(b) for b in others)]
    cfg = RubbishConfig(**{**result.config["rubbish"], "shared_noise": False})
    m = {int(k): int(v) for k, v in result.config["m"].items()}
    new = rubbish_transfer({n: models[n] for n in result.n_values}, result.n_per_class, cfg, m=m,
                           beta_own=result.beta_own, beta_single=result.beta_single,
                           seed=int(result.config["seed"]), samples_per_class=1, blocks=blocks, device=device)
    pos = np.concatenate([np.arange(N_CLASSES * b, N_CLASSES * (b + 1)) for b in blocks])  # cached positions
    old_img, new_img = result.samples[:, :N_CLASSES].astype(np.float64), new.samples[:, :N_CLASSES]  # (G, 10, 784)
    rel = np.linalg.norm(new_img - old_img, axis=2) / np.maximum(np.linalg.norm(old_img, axis=2), 1e-12)  # (G, 10)
    return {
        "blocks": blocks,
        "image_max_abs_diff": {n: float(np.abs(new_img[g] - old_img[g]).max()) for g, n in enumerate(result.n_values)},
        "image_max_rel_dist": {n: float(rel[g].max()) for g, n in enumerate(result.n_values)},
        "z_single_max_abs_diff": float(np.abs(new.z_single - result.z_single[:, :, pos]).max()),
        "z_own_max_abs_diff": float(np.abs(new.z_own - result.z_own[:, :, pos]).max()),
        "label_disagree": int((new.predictions != result.predictions[:, :, pos]).sum()),
        "compared": int(new.predictions.size),
        "status_disagree": int((new.status != result.status[:, pos]).sum()),
    }


# ---------------------------------------------------------------------------------------------------------
# All three figures
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ChapterResults:
    """What chapter 4 shows: Figs. 5, 6 and 7 (``fig7``: :func:`dam_utils.confidence.confidence_results`, keyed
    by n), where they come from (``source``), the model entries (manifest entry or training record), the
    models when computed here, and ``missing``: the powers asked for that the results do not cover."""

    fig5: TransferResult | None
    fig6: RubbishTransferResult | None
    fig7: dict[int, dict[str, Any]]
    source: str
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)
    models: dict[int, DAM] | None = None
    missing: list[int] = field(default_factory=list)

    @property
    def n_values(self) -> list[int]:
        return [int(n) for n in self.fig7]

    def clean_confidence(self, own: bool = False) -> dict[int, float]:
        """Mean confidence (percent) of each model in the clean test digits, at the single beta_sm of Fig. 6
        (or at its own fitted beta_sm): what a Fig. 6 cell must be read against."""
        key = "mean_confidence" if own else "mean_confidence_single"
        return {n: float(r[key]) for n, r in self.fig7.items()}


def compute_results(
    models: Mapping[int, DAM],
    m: Mapping[int, int],
    data: Any,
    *,
    figs: Sequence[int] = (5, 6, 7),
    n_images: int = CHAPTER_SIZES["cpu"]["n_images"],
    n_per_class: int = CHAPTER_SIZES["cpu"]["n_per_class"],
    profile: str = "cpu",
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> ChapterResults:
    """Figs. 7, 5 and 6 (those in ``figs``; Fig. 7 always, as Fig. 6 needs each model's fitted beta_sm) for
    ``models``, with the attack presets of ``profile``; ``seed`` draws the rubbish noise. The one place that
    runs the experiments, for the chapter (:func:`dam_utils.reproduce.chapter_results`) and for
    ``make reproduce`` alike. ``source`` and ``entries`` are left for the caller."""
    t0 = time.perf_counter()
    r7 = confidence_results(models, data)
    wall7 = time.perf_counter() - t0
    for r in r7.values():
        r["wall_time_s"] = wall7
    r5 = r6 = None
    if 5 in figs:
        r5 = adversarial_transfer(models, data, n_images, DeformConfig.preset(profile), m=m, device=device,
                                  progress=progress)
    if 6 in figs:
        r6 = rubbish_transfer(models, n_per_class, RubbishConfig.preset(profile), m=m,
                              beta_own={n: r7[n]["beta_sm"] for n in r7}, seed=seed, device=device,
                              progress=progress)
    return ChapterResults(r5, r6, r7, "computed here", models=dict(models))
