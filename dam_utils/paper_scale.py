"""Issue 11 on a lent GPU: train the paper-scale DAMs in stacks of seeds, measure them there, bring them back in a
few small files, and store them here with provenance.

The GPU machine has torch (not 2.13), numpy and scipy, no tqdm, no Jupyter and no network, and lends itself for
minutes; what a command writes under ``$OUT`` comes back (at most 8 files of 16 MiB, 64 MiB per call). So one
command does everything that needs the GPU, in priority order, and rewrites its pack after every stack, so that a
command stopped by its time limit still returns every finished model::

    # there (carry data/mnist.npz): seed 0 of every n first, then the other seeds
    python -m dam_utils.paper_scale run --out "$OUT" --n 2 3 20 30 --seeds 0 --budget-s 480
    # here, with the files that came back
    python -m dam_utils.paper_scale import <dir>

``run`` trains ``TrainConfig.preset(profile, n)`` for every seed at once (:func:`dam_utils.train_stack.train_stack`),
one stack per n, and measures each model on the device: final train and test error, the health report (dead
share, live memories that vote for one class), beta_sm (Fig. 7) and, for n != 2, the error on adversarial images
made by the n = 2 model of the same seed (Fig. 5's key cell) and the reverse. The pack is ``<tag>.json`` (every
model's config, history, measurements, environment, the SHA-256 of its raw weights and of the code that trained
it) and, for ``--kind book``, the weights: each model's float32 bytes split into byte planes and deflated (lossless;
the nearly constant sign and exponent bytes shrink most), concatenated and cut into ``<tag>.partNN`` files of at
most 15 MiB. A model whose weights would push the pack past ``--max-mib`` is recorded without them.
``--kind sweep`` never packs weights (issue 11: the n-sweep's weights are re-created from their configs).

``import`` checks every part and every model's SHA-256, recomputes each model's test error here on the CPU, and
stores the weights under ``artifacts/models`` (``manifest["paper_models"][n]`` for seed 0, every seed in
``manifest["paper_seed_models"]["<n>/<seed>"]``), or, for a sweep, its measurements in
``artifacts/results/n_sweep.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifacts import register, set_table_entry, store_weights
from .atomic import atomic_write_bytes, atomic_write_text
from .confidence import confidence_results
from .data import dataset_fingerprint, load_mnist
from .health import health_report, one_vote_share
from .model import DAM, N_PIXELS
from .params import PROFILES, check_choice, check_float, check_int, validate_params
from .paths import REPO_ROOT, artifacts_dir
from .train_config import TrainConfig, model_name
from .train_stack import check_seeds, train_stack
from .transfer import adversarial_transfer

PACK_FORMAT = "dam-book-gpu-pack/1"
PART_BYTES = 15 * 2**20  # under the 16 MiB a returned file may have
KINDS = ("book", "sweep")
SEED_TABLE = "paper_seed_models"  # manifest["paper_seed_models"]["<n>/<seed>"]: every seed of the paper scale
SWEEP_RESULTS = "n_sweep"  # artifacts/results/n_sweep.json


def code_digest(root: Path = REPO_ROOT) -> str:
    """SHA-256 over the sources of ``dam_utils`` (names and bytes, sorted): the code that trained a model."""
    h = hashlib.sha256()
    for path in sorted((root / "dam_utils").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def weights_sha256(xi: np.ndarray, xc: np.ndarray) -> str:
    """SHA-256 of a model's raw float32 weights, visible then class parts (C order)."""
    return hashlib.sha256(np.ascontiguousarray(xi, np.float32).tobytes()
                          + np.ascontiguousarray(xc, np.float32).tobytes()).hexdigest()


def compress_weights(xi: np.ndarray, xc: np.ndarray) -> bytes:
    """Lossless: the float32 bytes of (K, N + 10) weights as four byte planes (sign and exponent bytes are
    nearly constant, so they deflate well), then zlib."""
    w = np.concatenate([xi, xc], 1).astype(np.float32)
    return zlib.compress(w.view(np.uint8).reshape(-1, 4).T.copy().tobytes(), 6)


def decompress_weights(blob: bytes, K: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`compress_weights`: (K, width - 10) and (K, 10) float32."""
    planes = np.frombuffer(zlib.decompress(blob), np.uint8).reshape(4, -1)
    w = planes.T.copy().view(np.float32).reshape(K, width)
    return w[:, : width - 10].copy(), w[:, width - 10 :].copy()


def measure(model: DAM, m: int, data: Any) -> dict[str, Any]:
    """What the book reports of a model, measured where it was trained: errors, health, beta_sm."""
    health = health_report(model, data.x_train, data.x_test)
    conf = confidence_results({model.n: model}, data)[model.n]
    return {"train_error": model.error_rate(data.x_train, data.y_train),
            "test_error": model.error_rate(data.x_test, data.y_test), "health": health,
            "one_vote_live_%": one_vote_share(health), "beta_sm": conf["beta_sm"],
            "beta_sm_clipped": conf["beta_sm_clipped"], "loss_power_m": m}


def transfer_cells(small: DAM, model: DAM, m_small: int, m: int, data: Any, n_images: int) -> dict[str, float]:
    """Fig. 5's two off-diagonal cells between the n = 2 model and ``model`` on the first ``n_images`` test images."""
    res = adversarial_transfer({"small": small, "model": model}, data, n_images, m={"small": m_small, "model": m})
    return {"n_images": res.n_images, "error_on_n2_images_%": res.cell("small", "model"),
            "n2_error_on_its_images_%": res.cell("model", "small")}


class Pack:
    """The files ``run`` leaves in ``out``: ``<tag>.json`` and, with weights, ``<tag>.partNN``."""

    def __init__(self, out: Path, tag: str, kind: str, max_mib: float, header: dict[str, Any]) -> None:
        self.out, self.tag, self.kind, self.max_bytes = out, tag, kind, int(max_mib * 2**20)
        self.doc: dict[str, Any] = {"format": PACK_FORMAT, "kind": kind, **header, "models": [], "parts": []}
        self.blob = b""

    def add(self, entry: dict[str, Any], xi: np.ndarray, xc: np.ndarray) -> None:
        entry = {**entry, "weights_sha256": weights_sha256(xi, xc), "weights_shape": [xi.shape[0], xi.shape[1] + 10]}
        if self.kind == "book":
            c = compress_weights(xi, xc)
            if len(self.blob) + len(c) <= self.max_bytes:
                entry["blob"] = {"offset": len(self.blob), "length": len(c), "sha256": hashlib.sha256(c).hexdigest()}
                self.blob += c
            else:
                entry["blob"] = None
                print(f"pack: {entry['name']} left out (the pack would pass {self.max_bytes / 2**20:.0f} MiB)")
        self.doc["models"].append(entry)
        self.write()

    def write(self) -> None:
        parts = [self.blob[i : i + PART_BYTES] for i in range(0, len(self.blob), PART_BYTES)]
        self.doc["parts"] = [{"file": f"{self.tag}.part{k:02d}", "length": len(p),
                              "sha256": hashlib.sha256(p).hexdigest()} for k, p in enumerate(parts)]
        for meta, p in zip(self.doc["parts"], parts, strict=True):
            atomic_write_bytes(self.out / meta["file"], p)
        atomic_write_text(self.out / f"{self.tag}.json", json.dumps(self.doc, indent=1) + "\n")


def run(n_values: Sequence[int], seeds: Sequence[int], out: Path, *, profile: str = "paper", kind: str = "book",
        epochs: int | None = None, K: int | None = None, device: str = "auto", budget_s: float = 480.0,
        max_mib: float = 60.0, run_dir: Path = Path("runs/paper_scale"), transfer_images: int = 1000,
        eval_every: int = 10, tag: str | None = None) -> dict[str, Any]:
    """Train and measure one stack of ``seeds`` per n in ``n_values`` (in that order) within ``budget_s`` seconds;
    returns the pack's document. Every argument is checked before any work."""
    over = {k: v for k, v in dict(K=K, epochs=epochs).items() if v is not None}
    params = validate_params(profile=profile, n_values=list(n_values), device=device, **over)
    seeds = check_seeds(seeds)
    check_choice("kind", kind, KINDS)
    budget_s = check_float("budget_s", budget_s, 0.0, None, lo_inclusive=False)
    max_mib = check_float("max_mib", max_mib, 0.0, None, lo_inclusive=False)
    transfer_images = check_int("transfer_images", transfer_images, 0, 10000)
    eval_every = check_int("eval_every", eval_every, 0, None)
    data = load_mnist()
    dev = params.torch_device
    tag = tag or f"{kind}_{profile}_seeds{'-'.join(map(str, seeds))}"
    out.mkdir(parents=True, exist_ok=True)
    header = {"code_sha256": code_digest(), "data": dataset_fingerprint(data), "seeds": seeds,
              "n_values": list(params.n_values), "profile": profile, "overrides": over, "budget_s": budget_s}
    pack = Pack(out, tag, kind, max_mib, header)
    t0 = time.perf_counter()
    small: dict[int, tuple[DAM, int]] = {}  # seed -> the n = 2 model of this run and its m
    for n in params.n_values:
        left = budget_s - (time.perf_counter() - t0)
        if left <= 0:
            pack.doc.setdefault("not_started", []).append(n)
            continue
        cfg = TrainConfig.preset(profile, n, **over)
        ckpt = run_dir / f"{model_name(cfg)}_stack{'-'.join(map(str, seeds))}.ckpt"
        results = train_stack(cfg, seeds, data, device=dev, checkpoint=ckpt, checkpoint_every=50, budget_s=left,
                              eval_every=eval_every, health_every=100, progress=False)
        done = len(results[0].history)
        print(f"n={n}: {done}/{cfg.epochs} epochs of {len(seeds)} seeds in {results[0].wall_time_s:.0f} s "
              f"({1000 * results[0].wall_time_s / max(done, 1):.1f} ms per stacked epoch)", flush=True)
        if done < cfg.epochs:  # out of time: the checkpoint in run_dir continues it
            pack.doc.setdefault("stopped", []).append({"n": n, "epochs_done": done, "checkpoint": str(ckpt)})
            break
        for r in results:
            model = r.model
            entry = {"name": model_name(r.config), "n": n, "seed": r.config.seed, "config": r.config.to_dict(),
                     "history": r.history, "wall_time_s": round(r.wall_time_s, 1), "environment": r.environment,
                     "epochs": done, **measure(model, cfg.m, data)}
            if n == 2:
                small[r.config.seed] = (model, cfg.m)
            elif transfer_images and r.config.seed in small:
                model2, m2 = small[r.config.seed]
                entry["transfer"] = transfer_cells(model2, model, m2, cfg.m, data, transfer_images)
            pack.add(entry, model.xi.cpu().numpy(), model.xc.cpu().numpy())
            print(f"  seed {r.config.seed}: test {entry['test_error']:.2f} %, "
                  f"dead {entry['health']['dead_train_%']:.1f} %, beta_sm {entry['beta_sm']:.3g}", flush=True)
    pack.doc["wall_time_s"] = round(time.perf_counter() - t0, 1)
    pack.write()
    return pack.doc


def read_pack(directory: Path, tag: str | None = None) -> tuple[dict[str, Any], bytes]:
    """The document and the verified weight bytes of a pack (the only one in ``directory`` unless ``tag``)."""
    docs = [p for p in sorted(directory.glob("*.json")) if tag is None or p.stem == tag]
    if len(docs) != 1:
        raise FileNotFoundError(f"expected one pack document in {directory}, found {[p.name for p in docs]}")
    doc = json.loads(docs[0].read_text())
    if doc.get("format") != PACK_FORMAT:
        raise ValueError(f"{docs[0]} is not a {PACK_FORMAT} document")
    blob = b""
    for meta in doc["parts"]:
        part = (directory / meta["file"]).read_bytes()
        if len(part) != meta["length"] or hashlib.sha256(part).hexdigest() != meta["sha256"]:
            raise ValueError(f"{meta['file']} is truncated or modified (its SHA-256 differs from {docs[0].name})")
        blob += part
    return doc, blob


def import_pack(directory: Path, root: Path | None = None, tag: str | None = None) -> list[dict[str, Any]]:
    """Store a pack's models (weights and manifest entries) or its sweep measurements; returns what was stored."""
    doc, blob = read_pack(directory, tag)
    data = load_mnist()
    if doc["data"] != dataset_fingerprint(data):
        raise ValueError("the pack's models were trained on other data than data/mnist.npz here")
    local = code_digest()
    stored = []
    for e in doc["models"]:
        info = {k: v for k, v in e.items() if k not in ("history", "blob", "name")}
        info.update(kind="dam-weights", data={"name": data.name, **doc["data"]},
                    provenance={"pack": doc.get("profile"), "code_sha256": doc["code_sha256"],
                                "code_matches_this_checkout": doc["code_sha256"] == local})
        if doc["kind"] == "sweep" or e.get("blob") is None:
            stored.append(info | {"name": e["name"], "weights": "not kept"})
            continue
        b = e["blob"]
        chunk = blob[b["offset"] : b["offset"] + b["length"]]
        if hashlib.sha256(chunk).hexdigest() != b["sha256"]:
            raise ValueError(f"{e['name']}: its compressed weights do not match their SHA-256")
        xi, xc = decompress_weights(chunk, *e["weights_shape"])
        if weights_sha256(xi, xc) != e["weights_sha256"]:
            raise ValueError(f"{e['name']}: the decompressed weights do not match their SHA-256")
        cfg = TrainConfig(**e["config"])
        model = DAM(torch.from_numpy(xi), torch.from_numpy(xc), cfg.n, cfg.temperature(e["epochs"]))
        info["test_error_cpu"] = model.error_rate(data.x_test, data.y_test)  # here, float32 on the CPU
        if abs(info["test_error_cpu"] - e["test_error"]) > 0.05:
            raise ValueError(f"{e['name']}: test error {info['test_error_cpu']:.2f} % here, "
                             f"{e['test_error']:.2f} % on {e['environment']['device_name']}")
        arrays = {"xi": xi, "xc": xc, "n": np.int64(cfg.n), "T": np.float64(model.T)}
        # the published scale itself (no override) becomes the paper models: seed 0 the chapters', every seed here
        official = doc["profile"] == "paper" and not doc["overrides"] and xi.shape[1] == N_PIXELS
        table = "paper_models" if official and cfg.seed == 0 else None
        out = store_weights(e["name"], arrays, e["history"], info, root, table, str(cfg.n))
        if official:
            set_table_entry(SEED_TABLE, f"{cfg.n}/{cfg.seed}", e["name"], root)
        stored.append(out)
    if doc["kind"] == "sweep":
        _merge_sweep(stored, root)
    return stored


def _merge_sweep(entries: list[dict[str, Any]], root: Path | None) -> None:
    """Add sweep measurements to ``results/n_sweep.json`` (one row per name; a re-imported name is replaced)."""
    root = root or artifacts_dir()
    path = root / "results" / f"{SWEEP_RESULTS}.json"
    rows = {r["name"]: r for r in (json.loads(path.read_text())["rows"] if path.exists() else [])}
    rows.update({e["name"]: e for e in entries})
    atomic_write_text(path, json.dumps({"rows": sorted(rows.values(), key=lambda r: (r["n"], r["seed"]))},
                                       indent=1) + "\n")
    register(SWEEP_RESULTS, path, {"kind": "n-sweep-results"}, root)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and measure on this machine's device; write a pack to --out")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--n", type=int, nargs="+", required=True)
    r.add_argument("--seeds", type=int, nargs="+", default=[0])
    r.add_argument("--profile", default="paper", choices=PROFILES)
    r.add_argument("--kind", default="book", choices=KINDS)
    r.add_argument("--epochs", type=int)
    r.add_argument("--K", type=int)
    r.add_argument("--device", default="auto")
    r.add_argument("--budget-s", type=float, default=480.0, help="stop training after this many seconds")
    r.add_argument("--max-mib", type=float, default=60.0, help="weights beyond this are not packed")
    r.add_argument("--run-dir", type=Path, default=Path("runs/paper_scale"))
    r.add_argument("--transfer-images", type=int, default=1000)
    r.add_argument("--eval-every", type=int, default=10)
    r.add_argument("--tag")
    i = sub.add_parser("import", help="store a pack that came back under artifacts/")
    i.add_argument("directory", type=Path)
    i.add_argument("--tag")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.n, args.seeds, args.out, profile=args.profile, kind=args.kind, epochs=args.epochs, K=args.K,
            device=args.device, budget_s=args.budget_s, max_mib=args.max_mib, run_dir=args.run_dir,
            transfer_images=args.transfer_images, eval_every=args.eval_every, tag=args.tag)
    else:
        for e in import_pack(args.directory, tag=args.tag):
            kept = e.get("path") or f"{e['name']} (measurements only: its weights are not in the pack)"
            print(f"{kept}: test error {e['test_error']:.2f} %")


if __name__ == "__main__":
    main()
