"""Shared nbformat helpers for the notebook generator scripts ``notebooks/_build/build_NN.py``.

Notebooks are generated, never hand-edited JSON: run ``python notebooks/_build/build_00.py``
after changing a generator. Every notebook gets kernel ``python3``, no outputs, and exactly one
cell tagged ``parameters`` (made by :func:`params_cell` from a dict of flat literals).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
NOTEBOOKS = Path(__file__).resolve().parent.parent


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def md(text: str) -> nbformat.NotebookNode:
    """A markdown cell (the text is dedented)."""
    return new_markdown_cell(_clean(text))


def code(text: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    """A code cell without outputs (the source is dedented), optionally tagged."""
    cell = new_code_cell(_clean(text))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params_cell(params: dict[str, Any], comments: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The one ``parameters`` cell: ``NAME = <literal>`` per entry, with optional trailing comments."""
    comments = comments or {}
    lines = []
    for key, value in params.items():
        if not key.isidentifier():
            raise ValueError(f"parameter name {key!r} is not an identifier")
        if not isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
            raise ValueError(f"parameter {key}: {value!r} is not a flat literal")
        note = f"  # {comments[key]}" if key in comments else ""
        if any(q in note for q in "'\"="):
            raise ValueError(f"parameter {key}: no quotes or '=' in comments (papermill cannot parse the line)")
        lines.append(f"{key} = {value!r}{note}")
    return code("\n".join(lines), tags=["parameters"])


def new_notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """A v4 notebook with kernel ``python3`` and the given cells."""
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    n_params = sum("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    if n_params != 1:
        raise ValueError(f"a notebook needs exactly one parameters cell, got {n_params}")
    return nb


def write(nb: nbformat.NotebookNode, path: str | Path) -> Path:
    """Validate and write ``nb`` (stable cell ids derived from the position, so rebuilds diff cleanly)."""
    path = Path(path)
    if not path.is_absolute():
        path = NOTEBOOKS / path
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem[:2]}-{i:03d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path
