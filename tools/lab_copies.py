"""Make the learner's working copies of the chapters for JupyterLab (`make lab`).

    python tools/lab_copies.py [DIR] [--reset]

Every ``notebooks/*.ipynb`` is copied into ``DIR`` (default ``lab/``, git-ignored), so that a learner's edits,
runs and Lab's autosave never touch the committed notebooks the book renders. A copy that exists is kept
(the learner's work); ``--reset`` makes it again from the committed chapter. Each copy differs from its
chapter in three ways, all for JupyterLab:

* a first markdown cell says that it is a working copy, of which chapter and commit;
* the MyST roles that jupyterlab-myst cannot resolve in Lab are filled in: ``{glue:text}`key:fmt` `` and
  ``{glue}`key` `` become the value the committed run glued, formatted as myst-nb formats it in the book
  (those numbers belong to the committed run, and the first cell says so), and ``{cite}`a,b` `` becomes
  "[Author and Author, year; ...]" from ``book/references.bib``. Math, labelled equations, ``{eq}``,
  ``{ref}`` and admonitions render in Lab with jupyterlab-myst and are left alone;
* it is signed as trusted (it is the book's own output), so its HTML and JavaScript outputs display.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import nbformat
from myst_nb.core.variables import format_plain_text
from nbformat.sign import NotebookNotary
from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "notebooks"
BIB = ROOT / "book" / "references.bib"
META_KEY = "dam_book_lab_copy"

# {glue}`key`, {glue:text}`key:.2f`, {glue:text}`notebooks/02_rubbish::key:.1f`
_GLUE = re.compile(r"\{glue(?::text)?\}`([^`]+)`")
# every other glue role or directive (none can be filled in as text)
_OTHER_GLUE = re.compile(r"\{glue:(?!text\})[a-z]*\}`|(?:```|:::)\{glue")
_CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def glued_values(nb: Mapping) -> dict[str, str]:
    """``{key: text/plain}`` of every ``glue(...)`` output in a notebook's committed outputs."""
    out = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                data = o.get("data", {})
                text = data.get(meta.get("mime_prefix", "") + "text/plain", data.get("text/plain"))
                if text is not None:
                    out[meta["name"]] = "".join(text) if isinstance(text, list) else text
    return out


def citation_labels(bib: Path = BIB) -> dict[str, str]:
    """``{key: "Krotov and Hopfield, 2018"}`` (author_year style: one or two surnames, else "et al.")."""
    labels = {}
    for key, e in parse_file(str(bib)).entries.items():
        names = [" ".join(p.last_names) for p in e.persons.get("author", [])]
        who = " and ".join(names) if len(names) <= 2 else f"{names[0]} et al."
        labels[key] = f"{who}, {e.fields.get('year', 'n.d.')}"
    return labels


class RoleError(ValueError):
    """A role in a chapter cannot be filled in (unknown glue key or citation, or an unsupported glue form)."""


def fill_roles(text: str, doc: str, values: Mapping[str, Mapping[str, str]], cites: Mapping[str, str]) -> str:
    """``text`` with its glue and cite roles replaced (module doc). ``values[doc]``: the glued values of
    each document (``notebooks/03_deformations``), for roles that name another document."""
    if _OTHER_GLUE.search(text):
        raise RoleError(f"{doc}: a glue role or directive other than {{glue}} / {{glue:text}}: {text[:80]!r}")

    def glue(m: re.Match[str]) -> str:
        body = m.group(1)
        other, _, rest = body.rpartition("::")
        key, _, fmt = rest.partition(":")
        src = other.strip("/") or doc
        if key not in values.get(src, {}):
            raise RoleError(f"{doc}: glue key {key!r} is not glued in {src}")
        return format_plain_text(values[src][key], fmt)

    def cite(m: re.Match[str]) -> str:
        keys = [k.strip() for k in m.group(1).split(",")]
        missing = [k for k in keys if k not in cites]
        if missing:
            raise RoleError(f"{doc}: unknown citation(s) {missing} (not in {BIB.name})")
        return "[" + "; ".join(cites[k] for k in keys) + "]"

    return _CITE.sub(cite, _GLUE.sub(glue, text))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def working_copy(src: Path, values: Mapping[str, Mapping[str, str]], cites: Mapping[str, str],
                 commit: str) -> nbformat.NotebookNode:
    """The working copy of chapter ``src`` (module doc), as a signed notebook."""
    raw = src.read_bytes()
    nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    doc = src.relative_to(ROOT).with_suffix("").as_posix()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = fill_roles(cell.source, doc, values, cites)
    banner = nbformat.v4.new_markdown_cell(
        f"**Working copy** of `{src.relative_to(ROOT).as_posix()}` (commit `{commit}`), made by `make lab`. "
        "Edit and run it freely: the book renders the committed chapter, never this copy "
        "(`make lab LAB_RESET=1` makes it again). The numbers in the text were filled in from the book's "
        "committed run; re-running the cells recomputes the outputs, not the text.")
    banner.metadata["tags"] = ["lab-working-copy"]
    nb.cells.insert(0, banner)
    nb.metadata[META_KEY] = {"source": src.relative_to(ROOT).as_posix(), "commit": commit,
                             "source_sha256": hashlib.sha256(raw).hexdigest()}
    NotebookNotary().sign(nb)
    return nb


def make_copies(dest: Path, reset: bool = False, chapters: Path = CHAPTERS) -> list[tuple[Path, str]]:
    """Write the working copy of every chapter into ``dest`` (kept when present, unless ``reset``);
    returns ``(path, what happened)`` per chapter."""
    sources = sorted(chapters.glob("*.ipynb"))
    values = {}
    for p in sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("book/*.ipynb")):
        values[p.relative_to(ROOT).with_suffix("").as_posix()] = glued_values(json.loads(p.read_text("utf-8")))
    cites, commit = citation_labels(), _commit()
    dest.mkdir(parents=True, exist_ok=True)
    report = []
    for src in sources:
        out = dest / src.name
        if out.exists() and not reset:
            old = json.loads(out.read_text("utf-8")).get("metadata", {}).get(META_KEY, {})
            changed = old.get("source_sha256") != hashlib.sha256(src.read_bytes()).hexdigest()
            report.append((out, "kept (the chapter changed since; LAB_RESET=1 makes it again)" if changed
                           else "kept"))
            continue
        nb = working_copy(src, values, cites, commit)
        tmp = out.with_name(out.name + ".tmp")
        nbformat.write(nb, str(tmp))
        tmp.replace(out)
        report.append((out, "made"))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", nargs="?", default="lab", help="directory of the working copies (default lab/)")
    ap.add_argument("--reset", action="store_true", help="make every copy again (discards your edits)")
    args = ap.parse_args(argv)
    try:
        report = make_copies(Path(args.dest), args.reset)
    except RoleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path, what in report:
        print(f"{path}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
