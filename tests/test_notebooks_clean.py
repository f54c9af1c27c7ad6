"""Every committed notebook is valid, parameterisable, free of errors, timings and machine paths.

Notebooks are committed with their outputs (the book is built from them without executing), so what
is stored is what readers see. `make notebooks` re-executes them and runs tools/clean_notebooks.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

from conftest import REPO_ROOT, committed_notebooks

NOTEBOOKS = committed_notebooks()
IDS = [p.relative_to(REPO_ROOT).as_posix() for p in NOTEBOOKS]

# Absolute paths of one machine; a committed output must not depend on where it was run.
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/work|/root|/home|/tmp|/Users)/")
TIMING_KEYS = {"papermill", "execution", "ExecuteTime"}


def _load_cleaner():
    spec = importlib.util.spec_from_file_location("clean_notebooks", REPO_ROOT / "tools" / "clean_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _output_texts(output: dict) -> list[str]:
    """All text an output shows: stream text, text/* and JSON-ish data, error tracebacks."""
    texts = []
    if "text" in output:
        texts.append("".join(output["text"]) if isinstance(output["text"], list) else output["text"])
    for mime, data in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json") or mime == "application/javascript":
            texts.append(data if isinstance(data, str) else json.dumps(data))
    texts += output.get("traceback", [])
    return texts


def test_there_are_notebooks() -> None:
    assert (REPO_ROOT / "book" / "intro.ipynb") in NOTEBOOKS


@pytest.fixture(params=NOTEBOOKS, ids=IDS)
def notebook(request) -> tuple[str, dict]:
    path: Path = request.param
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        pytest.fail(f"{path}: not valid JSON ({exc})")
    return path.relative_to(REPO_ROOT).as_posix(), nb


def test_valid_nbformat(notebook) -> None:

    name, nb = notebook
    nbformat.validate(nbformat.from_dict(nb))
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", f"{name}: kernel is not python3"


def test_has_parameters_cell(notebook) -> None:
    name, nb = notebook
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: needs exactly one cell tagged 'parameters' (has {len(tagged)})"
    assert tagged[0]["cell_type"] == "code"
    injected = [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert not injected, f"{name}: committed with papermill's injected parameters; edit the parameters cell instead"


def test_executed_without_errors(notebook) -> None:
    name, nb = notebook
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    errors = [
        (i, o.get("ename"))
        for i, c in enumerate(nb["cells"])
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, f"{name}: stored error outputs (cell, exception): {errors}"
    assert any(c.get("outputs") for c in code), f"{name}: no outputs at all; was it executed and committed?"
    unexecuted = [i for i, c in enumerate(code) if c["source"] and c.get("execution_count") is None]
    assert not unexecuted, f"{name}: code cells never executed: {unexecuted}"


def test_no_timing_metadata(notebook) -> None:
    name, nb = notebook
    assert not TIMING_KEYS & nb["metadata"].keys(), f"{name}: notebook metadata has execution timings"
    noisy = [i for i, c in enumerate(nb["cells"]) if TIMING_KEYS & c.get("metadata", {}).keys()]
    assert not noisy, f"{name}: cells {noisy} carry timing metadata; run tools/clean_notebooks.py"


def test_no_absolute_paths_in_outputs(notebook) -> None:
    name, nb = notebook
    found = []
    for i, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                for m in ABSOLUTE_PATH.finditer(text):
                    found.append(f"cell {i}: ...{text[max(m.start() - 30, 0) : m.end() + 40]}...")
    assert not found, f"{name}: absolute paths in outputs:\n" + "\n".join(found)


def test_cleaner_has_nothing_left_to_do(notebook) -> None:
    name, _ = notebook
    cleaner = _load_cleaner()
    assert not cleaner.clean_file(REPO_ROOT / name, check=True), f"{name}: run tools/clean_notebooks.py"


def test_cleaner_strips_papermill_noise() -> None:
    cleaner = _load_cleaner()
    nb = {
        "metadata": {
            "papermill": {"duration": 3.2, "input_path": "/tmp/x.ipynb"},
            "language_info": {"name": "python", "version": "3.11.7"},
        },
        "cells": [
            {
                "cell_type": "code",
                "metadata": {
                    "tags": [],
                    "papermill": {"start_time": "2025-01-01T00:00:00", "duration": 1.0, "status": "completed"},
                    "execution": {"iopub.execute_input": "2025-01-01T00:00:00"},
                },
                "source": "x = 1",
                "outputs": [],
                "execution_count": 1,
            },
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "source": "seed = 0",
                "outputs": [],
                "execution_count": 2,
            },
        ],
    }
    cleaned = cleaner.clean(nb)
    assert cleaned["metadata"] == {"language_info": {"name": "python"}}
    assert cleaned["cells"][0]["metadata"] == {}
    assert cleaned["cells"][1]["metadata"] == {"tags": ["parameters"]}


def _sanitize(text: str) -> str:

    patterns = get_sanitize_patterns((REPO_ROOT / "tests" / "sanitize.cfg").read_text(encoding="utf-8"))
    assert len(patterns) >= 8, "tests/sanitize.cfg lost some of its regex/replace pairs"
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize(
    ("run1", "run2"),
    [
        ("<dam_utils.model.DAM object at 0x7f3a2c1b9d30>", "<dam_utils.model.DAM object at 0x55d0c2a1e0f0>"),
        (
            " 42%|████▏     | 21/50 [00:03<00:04,  6.02it/s]\r100%|██████████| 50/50 [00:07<00:00,  6.50it/s]",
            "100%|██████████| 50/50 [00:09<00:00,  5.31it/s]",
        ),
        ("epoch 3 done in 12.3 s", "epoch 3 done in 9.87 s"),
        ("attack took 850 ms", "attack took 1210 ms"),
        ("CPU times: user 1.2 s, sys: 10 ms, total: 1.21 s", "CPU times: user 3 s, sys: 1 ms, total: 3.01 s"),
        ("saved at 2025-01-31T12:34:56.789", "saved at 2026-11-21 05:55:24"),
        ("cache /work/main/data/mnist.npz", "cache /home/someone/dam-book/data/mnist.npz"),
        ("elapsed 1:02:03", "elapsed 0:59:58"),
    ],
)
def test_sanitizer_hides_noise(run1: str, run2: str) -> None:
    """Two runs that differ only in noise compare equal after sanitising."""
    assert _sanitize(run1) == _sanitize(run2)


@pytest.mark.parametrize(
    "result",
    [
        "test error n=2: 1.51%, n=20: 1.63%",
        "K = 2000 memories, 3000 epochs, beta = 0.01",
        "transfer n=2 -> n=30: 32% (paper: 32%)",
        "confidence 0.987 +- 0.004",
    ],
)
def test_sanitizer_keeps_results(result: str) -> None:
    """The numbers a chapter reports are compared exactly, never sanitised away."""
    assert _sanitize(result) == result
