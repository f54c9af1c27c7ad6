"""Strip execution noise from committed notebooks, so that a re-run changes only what really changed.

Removed: papermill's notebook and per-cell metadata (start/end times, durations, status, the absolute
input/output paths), JupyterLab's ``execution`` timing metadata, the ``ExecuteTime`` of older
extensions, and the interpreter's patch version in ``language_info``. Everything a reader or the book
needs stays: sources, outputs (with their own metadata), tags, widget state, kernelspec.

    python tools/clean_notebooks.py [--check] [NOTEBOOK ...]

Without paths it cleans every committed notebook (``notebooks/*.ipynb`` and ``book/*.ipynb``).
With ``--check`` it changes nothing and exits 1 when some notebook is not clean (``make lint``).
``make notebooks`` runs it after papermill.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Notebook-level metadata keys that only describe one execution.
NOTEBOOK_NOISE = ("papermill",)
#: Cell-level metadata keys that only describe one execution.
CELL_NOISE = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")
#: ``language_info`` keys that vary between machines without meaning anything for the book.
LANGUAGE_INFO_NOISE = ("version",)


def committed_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """Every notebook the book commits: the chapters and the book's own pages."""
    return sorted((root / "notebooks").glob("*.ipynb")) + sorted((root / "book").glob("*.ipynb"))


def clean(nb: dict) -> dict:
    """Return ``nb`` (a notebook as parsed JSON) without execution noise; modifies it in place."""
    meta = nb.setdefault("metadata", {})
    for key in NOTEBOOK_NOISE:
        meta.pop(key, None)
    for key in LANGUAGE_INFO_NOISE:
        meta.get("language_info", {}).pop(key, None)
    for cell in nb.get("cells", []):
        cell_meta = cell.setdefault("metadata", {})
        for key in CELL_NOISE:
            cell_meta.pop(key, None)
        if cell_meta.get("tags") == []:  # papermill adds an empty tag list to every cell
            del cell_meta["tags"]
        if "remove-output" in cell_meta.get("tags", []):  # never shown: do not store it
            cell["outputs"] = []
    # Widget state without a stored widget view would make the site load widget JS for nothing.
    views = [
        o for c in nb.get("cells", []) for o in c.get("outputs", []) or []
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    if not views:
        meta.pop("widgets", None)
    return nb


def dumps(nb: dict) -> str:
    """Serialise like Jupyter does (indent 1, key order kept, UTF-8, final newline)."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def clean_file(path: Path, check: bool = False) -> bool:
    """Clean one notebook file; return True when it was (or, with ``check``, would be) changed."""
    before = path.read_text(encoding="utf-8")
    after = dumps(clean(json.loads(before)))
    if after == before:
        return False
    if not check:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(after, encoding="utf-8")
        tmp.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: every committed one)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any is not clean")
    args = parser.parse_args(argv)
    paths = args.paths or committed_notebooks()
    changed = [p for p in paths if clean_file(p, check=args.check)]
    for p in changed:
        print(f"{'not clean' if args.check else 'cleaned'}: {p}")
    if args.check and changed:
        print("run: .venv/bin/python tools/clean_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
