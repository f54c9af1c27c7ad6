"""Data flows one way through dam_utils (STYLE.md house rule 2).

    data -> model/train -> artifacts -> attacks/metrics -> experiments/claims -> plots -> chapter CLIs

Each module sits in one tier of ``TIERS``; it may import from a tier to its left, or from its own tier
when no cycle results. The imports are read with ``ast`` (every ``import`` in the file, top level or
not, ``TYPE_CHECKING`` included), so an import that points right fails here before it can become a
cycle at run time. A new module must be given a tier.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGE = "dam_utils"

TIERS: tuple[tuple[str, ...], ...] = (
    # 0 foundations: directories, atomic writes, parameter checks, environment record, the paper's numbers
    ("paths", "atomic", "provenance", "params", "paper"),
    # 1 data and the model: MNIST files and cache, DAM_n, checkpoints
    ("data_sources", "data", "model", "checkpoint"),
    # 2 what training needs besides the model: its config and the health of the memories
    ("health", "train_config"),
    # 3 training and the manifest of trained models
    ("train", "train_stack", "artifacts"),
    # 4 book models (load or train), attack numerics, confidence, the rectified-polynomial networks
    ("book_models", "objectives", "descent", "confidence", "polynet", "audit_model", "cnn", "hopfield",
     "dense_net"),
    # 5 attacks and metrics, and studies over trained models
    ("rubbish", "deform", "sensitivity", "rubbish_metrics", "metrics", "dead_memory_study", "fgsm", "pairing",
     "audit_attacks", "lbfgs", "selective_dropout", "deconvnet", "cnn_features", "adv_train"),
    # 6 experiments across models, their results cache, and the verdicts
    ("transfer", "results_cache", "claims", "section6", "audit", "explorer_traces", "slides", "lbfgs_pairs", "musunuru",
     "hard_negatives", "hinthorn", "musunuru_report", "extension_models", "extensions", "rubbish_cache"),
    # 7 presentation: figures, widgets, the scorecard page
    ("plots", "figures_attacks", "figures_transfer", "section6_tables", "audit_tables", "widgets", "figures_hinthorn",
     "figures_musunuru", "extensions_report", "scorecard", "chapter_glue"),
    # 8 command lines that run a whole chapter's computation
    ("reproduce", "paper_scale"),
)


def internal_imports(source: str, modules: set[str]) -> set[str]:
    """The package modules a module's ``source`` imports: ``from .x import``, ``from . import x``,
    ``from dam_utils.x import``, ``from dam_utils import x``, ``import dam_utils.x``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or node.module == PACKAGE:  # from . import x / from .x import y / from dam_utils ...
                if node.module and node.module != PACKAGE:
                    found.add(node.module.split(".")[0])
                else:
                    found |= {alias.name for alias in node.names}
            elif node.level == 0 and node.module and node.module.startswith(PACKAGE + "."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE + ".")}
    return found & modules


def graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """``{module: modules it imports}`` within the package."""
    modules = set(sources)
    return {m: internal_imports(src, modules) - {m} for m, src in sources.items()}


def rightward(deps: Mapping[str, set[str]], tiers: Sequence[Sequence[str]]) -> list[str]:
    """One line per import of a module from a tier to its right."""
    tier = {m: i for i, ms in enumerate(tiers) for m in ms}
    return [f"{m} (tier {tier[m]}) imports {d} (tier {tier[d]})"
            for m in sorted(deps) for d in sorted(deps[m]) if tier[d] > tier[m]]


def cycles(deps: Mapping[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search, each as ``[a, b, ..., a]``."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(deps.get(m, ())):
            if state.get(d) == 1:
                found.append([*path[path.index(d):], d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(deps):
        if m not in state:
            visit(m, [m])
    return found


@pytest.fixture(scope="module")
def package_sources() -> dict[str, str]:
    files = sorted((REPO_ROOT / PACKAGE).glob("*.py"))
    return {p.stem: p.read_text(encoding="utf-8") for p in files if p.stem != "__init__"}


def test_every_module_has_exactly_one_tier(package_sources: dict[str, str]) -> None:
    listed = [m for ms in TIERS for m in ms]
    assert len(listed) == len(set(listed)), "a module is listed in two tiers"
    assert not set(package_sources) - set(listed), "new modules need a tier in TIERS"
    assert not set(listed) - set(package_sources), "TIERS lists modules that no longer exist"


def test_no_import_points_right(package_sources: dict[str, str]) -> None:
    bad = rightward(graph(package_sources), TIERS)
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_no_import_cycles(package_sources: dict[str, str]) -> None:
    found = cycles(graph(package_sources))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_package_import_is_empty() -> None:
    """``import dam_utils`` imports no submodule (it stays cheap, and cannot start a cycle)."""
    init = (REPO_ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    assert not internal_imports(init, {p.stem for p in Path(REPO_ROOT / PACKAGE).glob("*.py")})


# --- the checks themselves can fail ----------------------------------------------------------------------


def test_every_import_form_is_seen() -> None:
    src = ("from .model import DAM\nfrom . import paper\nimport dam_utils.train\nfrom dam_utils import plots\n"
           "from dam_utils.data import load_mnist\nimport torch\nfrom typing import TYPE_CHECKING\n"
           "def f():\n    from .claims import cell\n")
    modules = {"model", "paper", "train", "plots", "data", "claims", "other"}
    assert internal_imports(src, modules) == modules - {"other"}


def test_a_synthetic_rightward_import_and_cycle_are_caught() -> None:
    sources = {"paths": "from .plots import imshow_digit\n", "plots": "from .paths import REPO_ROOT\n",
               "data": "from . import paths\n"}
    deps = graph(sources)
    assert rightward(deps, [("paths", "data"), ("plots",)]) == ["paths (tier 0) imports plots (tier 1)"]
    assert cycles(deps) == [["paths", "plots", "paths"]]
    assert rightward(graph({"paths": "", "plots": "from .paths import x\n"}), [("paths",), ("plots",)]) == []
