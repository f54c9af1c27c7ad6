"""Every chapter under notebooks/ runs end to end with papermill at the smoke profile, and rejects a bad
parameter before doing any work.

Generic: a new chapter is covered as soon as its notebook exists. Chapters must accept the standard
parameters (``profile``, ``recompute``, ``device``) in their ``parameters`` cell and validate them with
:func:`dam_utils.params.validate_params` in the next cell.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
SMOKE = {"profile": "smoke", "recompute": True, "device": "cpu"}
#: Integer parameters that validate_params rejects at -5, in order of preference.
BAD_INT_PARAMETERS = ("K", "epochs", "n_images", "seed")

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

if not CHAPTERS:  # pragma: no cover - before the first chapter exists
    pytest.skip("no notebooks under notebooks/ yet", allow_module_level=True)


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _declared(path: Path) -> dict[str, object]:
    """The parameters the notebook's ``parameters`` cell declares (papermill's own parser)."""
    return pm.inspect_notebook(str(path))


def _run(path: Path, out: Path, parameters: dict[str, object]) -> None:
    pm.execute_notebook(
        str(path), str(out), parameters=parameters, cwd=str(path.parent), progress_bar=False,
        log_output=False, kernel_name="python3", execution_timeout=600,
    )


def _error_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any(o.get("output_type") == "error" for o in c.get("outputs", []))]


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_declares_the_standard_parameters(path: Path) -> None:
    declared = _declared(path)
    missing = [k for k in SMOKE if k not in declared]
    assert not missing, f"{path.name}: the parameters cell lacks {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_chapter_runs_at_smoke_profile(path: Path, tmp_path: Path) -> None:
    out = tmp_path / path.name
    _run(path, out, SMOKE)
    nb = nbformat.read(out, as_version=4)
    assert not _error_cells(nb)
    stderr = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not any("Traceback" in s for s in stderr), stderr


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_bad_parameter_fails_before_any_work(path: Path, tmp_path: Path) -> None:
    declared = _declared(path)
    name = next((p for p in BAD_INT_PARAMETERS if p in declared), None)
    if name is None:
        pytest.skip(f"{path.name} declares none of {BAD_INT_PARAMETERS}")
    out = tmp_path / path.name
    with pytest.raises(pm.PapermillExecutionError) as info:
        _run(path, out, {**SMOKE, name: -5})
    assert f"'{name}'" in str(info.value) and "-5" in str(info.value)
    assert info.value.ename == "ParameterError"

    # It failed in the first cell after the parameters: nothing before it but imports and assignments.
    nb = nbformat.read(out, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    injected = next(i for i in code if "injected-parameters" in nb.cells[i].metadata.get("tags", []))
    first_after = next(i for i in code if i > injected)
    assert _error_cells(nb) == [first_after]


def _glued(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The values glued by myst_nb (``glue(..., display=False)``), as their text/plain repr."""
    out = {}
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            book = o.get("metadata", {}).get("scrapbook", {})
            if book.get("name"):
                out[book["name"]] = o.get("data", {}).get(book.get("mime_prefix", "") + "text/plain", "")
    return out


def test_transfer_chapter_runs_for_other_powers(tmp_path: Path) -> None:
    """The README's own example (n = 2 and 8) at the smoke profile: no error, every glue key that the text
    uses is defined, and the claims about large n read "not computed" (n = 8 is neither small nor large)."""
    path = REPO_ROOT / "notebooks" / "04_transfer.ipynb"
    out = tmp_path / path.name
    _run(path, out, {**SMOKE, "n_values": [2, 8]})
    nb = nbformat.read(out, as_version=4)
    assert not _error_cells(nb)
    glued = _glued(nb)
    text = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    used = set(re.findall(r"\{glue:text\}`([A-Za-z0-9_]+)", text))
    assert used and not used - set(glued), f"glue keys used but never defined: {sorted(used - set(glued))}"
    for key in ("v5_verdict", "v6b_verdict", "v6c_verdict"):
        assert glued[key] == "'not computed'", (key, glued[key])
    assert "nan" not in " ".join(glued[k] for k in used).lower()
