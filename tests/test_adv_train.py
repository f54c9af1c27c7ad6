"""dam_utils.adv_train (chapter 6): the FGSM minibatches are what they claim, a fine-tuning resumes exactly and
refuses another adversary's checkpoint, its parameters fail by name, and the committed FGSM-trained model's first
epoch is re-trained from the committed book model with the code as it is now."""

from __future__ import annotations

import pytest
import torch

from dam_utils.adv_train import TABLE, AdvTrainConfig, FGSMAdversary, fine_tune, table_key
from dam_utils.artifacts import book_model_name, entry, load_book_model, load_history, read_manifest
from dam_utils.checkpoint import CheckpointError
from dam_utils.model import DAM
from dam_utils.objectives import naive_objective
from dam_utils.params import ParameterError
from dam_utils.train import train
from dam_utils.train_config import TrainConfig


@pytest.fixture(scope="module")
def start(mnist):
    """A smoke-size DAM_3 and what fine_tune needs to start from it."""
    cfg = TrainConfig.smoke(3, K=40)
    res = train(cfg, mnist, progress=False)
    return res.model, {"config": cfg.to_dict(), "wall_time_s": res.wall_time_s}, res.history


def test_fgsm_minibatch_is_clean_rows_then_their_fgsm_images(small_model: DAM, mnist) -> None:
    v, y = mnist.x_test[:64], mnist.y_test[:64]
    adv = FGSMAdversary(eps=0.1, m=3)
    vv, yy = adv(small_model, v, y)
    assert vv.shape == (128, 784) and torch.equal(vv[:64], v) and torch.equal(yy, torch.cat([y, y]))
    step = vv[64:] - v
    assert float(step.abs().max()) <= 0.2 + 1e-6 and float(vv.abs().max()) <= 1.0
    # unclipped pixels move by exactly 2 eps, up the sign of the gradient of eq. (4) at the true label
    x = v.double().clone().requires_grad_(True)
    twin = DAM(small_model.xi.double(), small_model.xc.double(), small_model.n, small_model.T)
    (g,) = torch.autograd.grad(naive_objective(twin.energy_difference(x), y, 3).sum(), x)
    free = (v + 0.2 * torch.sign(g).float()).abs() <= 1.0
    moved = free & (g != 0)
    assert moved.sum() > 1000
    assert torch.allclose(step[moved], 0.2 * torch.sign(g[moved]).float(), atol=1e-6)
    assert adv.to_dict() == {"method": "fgsm", "eps": 0.1, "m": 3}


def test_adversarial_fine_tuning_resumes_exactly_and_refuses_another_adversary(mnist, start, tmp_path) -> None:
    cfg = AdvTrainConfig.smoke()
    straight = fine_tune(3, cfg, mnist, checkpoint=tmp_path / "a.ckpt", progress=False, start=start)
    fine_tune(3, cfg, mnist, checkpoint=tmp_path / "b.ckpt", progress=False, start=start, stop_after=1)
    resumed = fine_tune(3, cfg, mnist, checkpoint=tmp_path / "b.ckpt", progress=False, start=start)
    assert torch.equal(straight.model.xi, resumed.model.xi) and torch.equal(straight.model.xc, resumed.model.xc)
    base = start[1]["config"]["epochs"]
    assert [h["epoch"] for h in resumed.history] == list(range(1, base + cfg.extra_epochs + 1))
    assert all("adv_train_error" in h for h in resumed.history[base:])
    with pytest.raises(CheckpointError, match="adversary"):
        fine_tune(3, cfg.replace(eps=0.2), mnist, checkpoint=tmp_path / "b.ckpt", progress=False, start=start)
    with pytest.raises(CheckpointError, match="adversary"):
        fine_tune(3, cfg.replace(adversarial=False), mnist, checkpoint=tmp_path / "b.ckpt", progress=False,
                  start=start)


def test_training_refuses_data_of_another_name(mnist) -> None:
    with pytest.raises(ValueError, match="fashion_mnist"):
        train(TrainConfig.smoke(2, dataset="fashion_mnist"), mnist, progress=False)


@pytest.mark.parametrize(("field", "value", "rule"), [("eps", 0.0, "eps"), ("eps", 1.5, "eps"),
                                                      ("extra_epochs", 0, "extra_epochs")])
def test_bad_fine_tuning_parameters_fail_by_name(field: str, value: float, rule: str) -> None:
    with pytest.raises(ParameterError, match=rule):
        AdvTrainConfig.cpu(**{field: value})


@pytest.mark.slow
@pytest.mark.parametrize(("n", "adversarial"), [(2, True), (30, False)])  # an FGSM epoch at n = 30 takes ~80 s
def test_committed_fine_tuning_first_epoch_is_reproduced(mnist, n: int, adversarial: bool) -> None:
    """One epoch of a committed fine-tuning, re-run from the committed book model, gives the loss and the errors its
    history records (a different machine may round a few float32 sums differently)."""
    name = read_manifest().get(TABLE, {}).get(table_key(n, adversarial))
    if name is None:
        pytest.skip("no committed fine-tuned models (run `python -m dam_utils.adv_train`)")
    cfg = AdvTrainConfig(**entry(name)["fine_tuning"])
    model, e = load_book_model(n)
    start = (model, e, load_history(book_model_name(n)))
    res = fine_tune(n, cfg.replace(extra_epochs=1), mnist, progress=False, start=start)
    want = load_history(name)[e["epochs"]]
    got = res.history[-1]
    assert got["epoch"] == want["epoch"] == e["epochs"] + 1
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-3)
    assert ("adv_train_error" in got) == adversarial == ("adv_train_error" in want)
    for k in ("train_error", "adv_train_error", "test_error"):
        if k in want:
            assert abs(got[k] - want[k]) <= 0.1, k
