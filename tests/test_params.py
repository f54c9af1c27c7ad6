"""Parameter validation: every bad value fails early, naming the parameter, the value and what is valid."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from dam_utils.params import (
    KNOWN_PARAMS,
    PROFILES,
    ParameterError,
    Params,
    Preset,
    bool_field,
    check_choice,
    check_float,
    check_int,
    float_field,
    int_field,
    validate_params,
)


def fails(match: str, **kwargs) -> str:
    """Assert validate_params(**kwargs) raises ParameterError matching ``match``; return the message."""
    with pytest.raises(ParameterError, match=match) as info:
        validate_params(**kwargs)
    return str(info.value)


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_valid_values_pass(no_cuda: None) -> None:
    p = validate_params(
        profile="smoke", n_values=[2, 3, 20, 40], K=2000, epochs=0, n_images=10000, device="cpu",
        seed=2**32 - 1, recompute=True,
    )  # fmt: skip
    assert p == Params("smoke", (2, 3, 20, 40), 2000, 0, 10000, "cpu", 2**32 - 1, True)
    assert p.torch_device == torch.device("cpu")
    assert p.to_dict()["n_values"] == [2, 3, 20, 40]
    with pytest.raises(AttributeError):
        p.K = 3  # type: ignore[misc]  # frozen


def test_defaults_and_none_mean_unspecified(no_cuda: None) -> None:
    assert validate_params() == Params()
    p = validate_params(**dict.fromkeys(KNOWN_PARAMS))  # every key given as None
    assert p == Params(device="auto", recompute=False)
    assert p.profile is None and p.K is None
    assert p.torch_device == torch.device("cpu")


def test_single_int_and_numpy_ints_accepted() -> None:
    assert validate_params(n_values=3).n_values == (3,)
    assert validate_params(n_values=(30, 2)).n_values == (30, 2)  # order kept
    assert validate_params(K=np.int64(100), n_values=[np.int32(2)]).K == 100


def test_torch_device_resolves_auto_to_cuda_when_available(one_cuda: None) -> None:
    assert validate_params(device="auto").torch_device == torch.device("cuda")
    assert validate_params(device="cuda").torch_device == torch.device("cuda")
    assert validate_params(device="cuda:0").torch_device == torch.device("cuda:0")


@pytest.mark.parametrize("value", ["gpu", "Paper", "", 1])
def test_bad_profile(value) -> None:
    msg = fails(r"^Parameter 'profile' = ", profile=value)
    assert repr(value) in msg and "'paper', 'cpu', 'smoke'" in msg


@pytest.mark.parametrize("value", [0, 41, -2, [2, 41], [0, 3]])
def test_n_out_of_range(value) -> None:
    msg = fails(r"^Parameter 'n_values' = ", n_values=value)
    assert repr(value) in msg and "1 <= n <= 40" in msg


@pytest.mark.parametrize("value", [2.5, 3.0, "3", True, [2, 2.5], [True], ["20"], {2, 3}])
def test_n_not_integer(value) -> None:
    msg = fails(r"^Parameter 'n_values' = ", n_values=value)
    assert "integer" in msg and "1 <= n <= 40" in msg


def test_n_empty_list() -> None:
    msg = fails(r"^Parameter 'n_values' = \[\] is invalid", n_values=[])
    assert "non-empty" in msg and "empty" in msg and "1 <= n <= 40" in msg


def test_n_duplicates() -> None:
    msg = fails(r"^Parameter 'n_values' = \[2, 3, 2\] is invalid", n_values=[2, 3, 2])
    assert "distinct" in msg and "duplicate 2" in msg


@pytest.mark.parametrize("value", [0, -5, 20001, 2.0, "100", True])
def test_bad_K(value) -> None:
    msg = fails(r"^Parameter 'K' = ", K=value)
    assert msg.startswith(f"Parameter 'K' = {value!r} is invalid: must be an integer with 1 <= K <= 20000")


def test_K_message_exact() -> None:
    fails(r"^Parameter 'K' = -5 is invalid: must be an integer with 1 <= K <= 20000\.$", K=-5)


@pytest.mark.parametrize("value", [-1, 10001, 1.5, "3", False])
def test_bad_epochs(value) -> None:
    msg = fails(r"^Parameter 'epochs' = ", epochs=value)
    assert repr(value) in msg and "0 <= epochs <= 10000" in msg


@pytest.mark.parametrize("value", [0, 10001, 5.0, "all"])
def test_bad_n_images(value) -> None:
    msg = fails(r"^Parameter 'n_images' = ", n_images=value)
    assert repr(value) in msg and "1 <= n_images <= 10000" in msg


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cpu:0", "mps", "", 0, "auto:1"])
def test_bad_device(value) -> None:
    msg = fails(r"^Parameter 'device' = ", device=value)
    assert repr(value) in msg and "'auto', 'cpu', 'cuda'" in msg


@pytest.mark.parametrize("value", ["cuda", "cuda:0"])
def test_cuda_unavailable(no_cuda: None, value: str) -> None:
    msg = fails(r"^Parameter 'device' = ", device=value)
    assert "CUDA is not available" in msg
    assert "device='cpu'" in msg and "device='auto'" in msg
    assert validate_params(device="auto").torch_device == torch.device("cpu")


def test_cuda_index_beyond_device_count(one_cuda: None) -> None:
    msg = fails(r"^Parameter 'device' = 'cuda:1'", device="cuda:1")
    assert "cuda:0..cuda:0" in msg


@pytest.mark.parametrize("value", [-1, 2**32, 1.0, "42"])
def test_bad_seed(value) -> None:
    msg = fails(r"^Parameter 'seed' = ", seed=value)
    assert repr(value) in msg and "0 <= seed <= 4294967295" in msg


@pytest.mark.parametrize("value", ["False", "True", 0, 1, "yes"])
def test_recompute_not_bool(value) -> None:
    msg = fails(r"^Parameter 'recompute' = ", recompute=value)
    assert repr(value) in msg and "True or False" in msg
    if isinstance(value, str):
        assert "-p recompute True" in msg


def test_unknown_key() -> None:
    msg = fails(r"Unknown parameter\(s\) 'k', 'n'", k=5, n=[2])
    assert all(name in msg for name in KNOWN_PARAMS)


def test_all_errors_reported_at_once() -> None:
    msg = fails("K", K=0, seed=-1, foo=1)
    lines = msg.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Unknown parameter(s) 'foo'")
    assert lines[1].startswith("Parameter 'K' = 0") and lines[2].startswith("Parameter 'seed' = -1")


def test_generic_helpers() -> None:
    assert check_int("iters", 5, 1, 10) == 5
    with pytest.raises(ParameterError, match=r"^Parameter 'iters' = 0 is invalid: .*1 <= iters <= 10\.$"):
        check_int("iters", 0, 1, 10)
    with pytest.raises(ParameterError, match=r"iters >= 1"):
        check_int("iters", 0, 1)
    assert check_float("step", 1, 0, 1) == 1.0
    for bad in (0.0, -1e-3, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ParameterError, match=re.escape("must be a finite number with 0 < step <= 1")):
            check_float("step", bad, 0, 1, lo_inclusive=False)
    assert check_choice("norm", "l2", ["l2", "linf"]) == "l2"
    with pytest.raises(
        ParameterError, match=r"^Parameter 'norm' = 'L2' is invalid: must be one of 'l2', 'linf'\.$"
    ):
        check_choice("norm", "L2", ["l2", "linf"])


@dataclass(frozen=True)
class _Toy(Preset):
    steps: int = int_field(10, 1, 100)
    rate: float = float_field(0.5, 0.0, 1.0, lo_inclusive=False)
    clip: bool = bool_field(True)

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "cpu": {"steps": 5}, "smoke": {"steps": 2}}


def test_preset_mechanism_builds_validates_and_overrides() -> None:
    assert [_Toy.preset(p).steps for p in PROFILES] == [10, 5, 2]
    assert _Toy.smoke(rate=0.25) == _Toy(steps=2, rate=0.25)  # keywords override the preset
    assert _Toy.cpu() == _Toy.preset("cpu") and _Toy.paper() == _Toy()
    assert _Toy(steps=np.int64(7)).steps == 7 and type(_Toy(steps=np.int64(7)).steps) is int  # coerced
    assert _Toy().replace(clip=False).to_dict() == {"steps": 10, "rate": 0.5, "clip": False}
    with pytest.raises(ParameterError, match="'steps' = 0"):
        _Toy(steps=0)
    with pytest.raises(ParameterError, match="'rate'"):
        _Toy(rate=0.0)  # lower bound excluded
    with pytest.raises(ParameterError, match="'clip'"):
        _Toy(clip=1)
    with pytest.raises(ParameterError, match="'steps'"):
        _Toy().replace(steps=101)  # replace validates again
    with pytest.raises(ParameterError, match="'profile'"):
        _Toy.preset("gpu")
    with pytest.raises(FrozenInstanceError):
        _Toy().steps = 3  # type: ignore[misc]
