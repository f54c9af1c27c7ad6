"""Validation of the chapter parameters, before any work is done.

Every chapter's papermill ``parameters`` cell ends with one call::

    P = validate_params(profile=profile, n_values=n_values, K=K, epochs=epochs,
                        n_images=n_images, device=device, seed=seed, recompute=recompute)

which either returns a frozen :class:`Params` or raises :class:`ParameterError`
whose message names the parameter, repeats the bad value and states the valid
values, e.g. ``Parameter 'K' = -5 is invalid: must be an integer with 1 <= K <= 20000.``
All problems are reported at once (one line each). Validation is pure and fast:
no data are loaded, nothing is computed; torch is asked only whether a ``cuda``
device exists.

Defaults: every key is optional. ``profile``, ``n_values``, ``K``, ``epochs``,
``n_images`` and ``seed`` stay ``None`` when not given (or given as ``None``),
meaning "take the value from the profile" (resolved by the config module);
``device`` defaults to ``"auto"`` and ``recompute`` to ``False``.

Chapter-specific extra knobs (an attack step size, a number of iterations) use
the same helpers: :func:`check_int`, :func:`check_float`, :func:`check_choice`,
:func:`check_bool`.

Attack configurations (``RubbishConfig``, ``DeformConfig``) are frozen dataclasses built on
:class:`Preset`: each field carries its rule (:func:`int_field`, :func:`float_field`,
:func:`bool_field`), checked once when the config is built (:func:`validate_fields`), and the class
lists its ``paper`` / ``cpu`` / ``smoke`` overrides in ``_PRESETS``.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

import torch

__all__ = [
    "DEVICES",
    "EPOCHS_RANGE",
    "KNOWN_PARAMS",
    "K_RANGE",
    "N_IMAGES_RANGE",
    "N_RANGE",
    "PROFILES",
    "SEED_RANGE",
    "ParameterError",
    "Params",
    "Preset",
    "bool_field",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "float_field",
    "int_field",
    "validate_fields",
    "validate_params",
]

PROFILES: tuple[str, ...] = ("paper", "cpu", "smoke")
#: Powers n of the rectified polynomial F_n; beyond 40 float32 overflows in the model.
N_RANGE: tuple[int, int] = (1, 40)
K_RANGE: tuple[int, int] = (1, 20000)
EPOCHS_RANGE: tuple[int, int] = (0, 10000)
N_IMAGES_RANGE: tuple[int, int] = (1, 10000)
SEED_RANGE: tuple[int, int] = (0, 2**32 - 1)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class ParameterError(ValueError):
    """A chapter parameter has an invalid value; the message names it and its valid values."""


def _fail(name: str, value: Any, rule: str) -> ParameterError:
    return ParameterError(f"Parameter {name!r} = {value!r} is invalid: {rule}.")


def _is_int(value: Any) -> bool:
    """True for Python/numpy integers, False for bools, floats and strings."""
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and type(value).__name__ != "bool_"
    )


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (not bool, float or string), ``lo <= value <= hi``.

    ``lo``/``hi`` of ``None`` mean unbounded. Raises :class:`ParameterError`.
    """
    if lo is not None and hi is not None:
        rule = f"must be an integer with {lo} <= {name} <= {hi}"
    elif lo is not None:
        rule = f"must be an integer with {name} >= {lo}"
    elif hi is not None:
        rule = f"must be an integer with {name} <= {hi}"
    else:
        rule = "must be an integer"
    if not _is_int(value):
        hint = " (got a string: pass numbers with papermill -p, not -r)" if isinstance(value, str) else ""
        raise _fail(name, value, rule + hint)
    ivalue = int(value)
    if (lo is not None and ivalue < lo) or (hi is not None and ivalue > hi):
        raise _fail(name, value, rule)
    return ivalue


def check_float(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_inclusive: bool = True,
    hi_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float if it is a finite real number (int or float, not bool) within the bounds.

    ``lo``/``hi`` of ``None`` mean unbounded; ``*_inclusive`` choose ``<=`` or ``<``. Raises
    :class:`ParameterError`.
    """
    parts = []
    if lo is not None:
        parts.append(f"{lo} {'<=' if lo_inclusive else '<'} ")
    parts.append(name)
    if hi is not None:
        parts.append(f" {'<=' if hi_inclusive else '<'} {hi}")
    rule = "must be a finite number" + (f" with {''.join(parts)}" if lo is not None or hi is not None else "")
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or type(value).__name__ == "bool_":
        raise _fail(name, value, rule)
    fvalue = float(value)
    if not math.isfinite(fvalue):
        raise _fail(name, value, rule)
    if lo is not None and (fvalue < lo if lo_inclusive else fvalue <= lo):
        raise _fail(name, value, rule)
    if hi is not None and (fvalue > hi if hi_inclusive else fvalue >= hi):
        raise _fail(name, value, rule)
    return fvalue


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices`` (compared with ``==``, same type); else ParameterError."""
    choices = tuple(choices)
    if not any(type(value) is type(c) and value == c for c in choices):
        raise _fail(name, value, "must be one of " + ", ".join(repr(c) for c in choices))
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is exactly a bool (``True``/``False``; not a string or 0/1)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        hint = f" (with papermill use -p {name} True, not -r)" if isinstance(value, str) else ""
        raise _fail(name, value, f"must be a bool, True or False{hint}")
    return bool(value)


def _check_n_values(value: Any) -> tuple[int, ...]:
    lo, hi = N_RANGE
    rule = f"must be an integer or a non-empty list of distinct integers n with {lo} <= n <= {hi}"
    if _is_int(value):
        if not lo <= int(value) <= hi:
            raise _fail("n_values", value, rule)
        return (int(value),)
    if not isinstance(value, (list, tuple, range)):
        raise _fail("n_values", value, rule)
    if len(value) == 0:
        raise _fail("n_values", value, rule + " (the list is empty)")
    out: list[int] = []
    for item in value:
        if not _is_int(item) or not lo <= int(item) <= hi:
            raise _fail("n_values", value, rule + f" (bad entry {item!r})")
        out.append(int(item))
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise _fail("n_values", value, rule + f" (duplicate {', '.join(map(str, dupes))})")
    return tuple(out)


_DEVICE_RE = re.compile(r"(auto|cpu|cuda)(:\d+)?")


def _check_device(value: Any) -> str:
    valid = "must be 'auto', 'cpu', 'cuda' or 'cuda:<index>'"
    if type(value).__name__ == "device" and hasattr(value, "type"):  # a torch.device
        value = str(value)
    m = _DEVICE_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None or (m.group(2) and m.group(1) != "cuda"):
        raise _fail("device", value, valid)
    if m.group(1) == "cuda":
        if not torch.cuda.is_available():
            raise _fail(
                "device", value, "CUDA is not available on this machine; use device='cpu' or device='auto'"
            )
        index = int(m.group(2)[1:]) if m.group(2) else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise _fail("device", value, f"this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return value


@dataclass(frozen=True)
class Params:
    """Validated chapter parameters. ``None`` means "use the profile's value".

    Attributes:
        profile: ``"paper"``, ``"cpu"`` or ``"smoke"`` (None: the chapter's default).
        n_values: tuple of distinct powers n, each in 1..40, in the order given.
        K: number of memories, 1..20000.
        epochs: 0..10000; 0 means load the committed weights and train nothing.
        n_images: number of MNIST test images to use, 1..10000.
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
        seed: 0 <= seed < 2**32.
        recompute: recompute cached results instead of loading them (default False).
    """

    profile: str | None = None
    n_values: tuple[int, ...] | None = None
    K: int | None = None
    epochs: int | None = None
    n_images: int | None = None
    device: str = "auto"
    seed: int | None = None
    recompute: bool = False

    @property
    def torch_device(self) -> torch.device:
        """The resolved device: ``auto`` becomes ``cuda`` if available, else ``cpu``."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (n_values as a list), e.g. for an artifact manifest."""
        d = asdict(self)
        if d["n_values"] is not None:
            d["n_values"] = list(d["n_values"])
        return d


KNOWN_PARAMS: tuple[str, ...] = tuple(f.name for f in fields(Params))


def validate_params(**kwargs: Any) -> Params:
    """Validate chapter parameters and return them as a frozen :class:`Params`.

    Accepted keys (all optional; ``None`` = unspecified): ``profile``, ``n_values``,
    ``K``, ``epochs``, ``n_images``, ``device``, ``seed``, ``recompute``. ``n_values``
    may be a single int. Unknown keys and invalid values raise :class:`ParameterError`
    listing every problem, one line each.
    """
    errors: list[str] = []
    unknown = [k for k in kwargs if k not in KNOWN_PARAMS]
    if unknown:
        errors.append(
            f"Unknown parameter(s) {', '.join(repr(k) for k in unknown)}: "
            f"known parameters are {', '.join(KNOWN_PARAMS)}."
        )
    out: dict[str, Any] = {}

    def attempt(name: str, check: Any) -> None:
        if kwargs.get(name) is None:
            return
        try:
            out[name] = check(kwargs[name])
        except ParameterError as exc:
            errors.append(str(exc))

    attempt("profile", lambda v: check_choice("profile", v, PROFILES))
    attempt("n_values", _check_n_values)
    attempt("K", lambda v: check_int("K", v, *K_RANGE))
    attempt("epochs", lambda v: check_int("epochs", v, *EPOCHS_RANGE))
    attempt("n_images", lambda v: check_int("n_images", v, *N_IMAGES_RANGE))
    attempt("device", _check_device)
    attempt("seed", lambda v: check_int("seed", v, *SEED_RANGE))
    attempt("recompute", lambda v: check_bool("recompute", v))
    if errors:
        raise ParameterError("\n".join(errors))
    return Params(**out)


# ---------------------------------------------------------------------------------------------------------
# Checked dataclass fields and presets, for the attack configurations
# ---------------------------------------------------------------------------------------------------------


def int_field(default: int, lo: int | None = None, hi: int | None = None) -> Any:
    """A dataclass field holding an integer with ``lo <= value <= hi`` (:func:`check_int`)."""
    return field(default=default, metadata={"check": lambda name, v: check_int(name, v, lo, hi)})


def float_field(default: float, lo: float | None = None, hi: float | None = None, lo_inclusive: bool = True) -> Any:
    """A dataclass field holding a finite number within the bounds (:func:`check_float`)."""
    return field(default=default,
                 metadata={"check": lambda name, v: check_float(name, v, lo, hi, lo_inclusive=lo_inclusive)})


def choice_field(default: Any, choices: Iterable[Any]) -> Any:
    """A dataclass field holding one of ``choices`` (:func:`check_choice`)."""
    options = tuple(choices)
    return field(default=default, metadata={"check": lambda name, v: check_choice(name, v, options)})


def bool_field(default: bool) -> Any:
    """A dataclass field holding exactly a bool (:func:`check_bool`)."""
    return field(default=default, metadata={"check": check_bool})


def validate_fields(cfg: Any) -> None:
    """Check every field of a (frozen) dataclass with the rule in its ``metadata['check']``; the checked,
    coerced value replaces the given one. Raises :class:`ParameterError` naming the first bad field."""
    for f in fields(cfg):
        check = f.metadata.get("check")
        if check is not None:
            object.__setattr__(cfg, f.name, check(f.name, getattr(cfg, f.name)))


class Preset:
    """Mixin for frozen config dataclasses: ``paper()``, ``cpu()``, ``smoke()`` and ``preset(profile)``
    build the class with the profile's overrides (``_PRESETS[profile]``) and then the keyword arguments;
    ``__post_init__`` validates every field (:func:`validate_fields`)."""

    _PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        validate_fields(self)

    @classmethod
    def paper(cls, **kw: Any) -> Any:
        return cls.preset("paper", **kw)

    @classmethod
    def cpu(cls, **kw: Any) -> Any:
        return cls.preset("cpu", **kw)

    @classmethod
    def smoke(cls, **kw: Any) -> Any:
        return cls.preset("smoke", **kw)

    @classmethod
    def preset(cls, profile: str, **kw: Any) -> Any:
        """The config of ``profile`` (one of :data:`PROFILES`), with ``kw`` overriding its fields."""
        check_choice("profile", profile, PROFILES)
        return cls(**{**cls._PRESETS[profile], **kw})

    def replace(self, **kw: Any) -> Any:
        """A copy with the fields in ``kw`` changed (validated again)."""
        return replace(self, **kw)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]
