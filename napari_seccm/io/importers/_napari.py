"""napari's File > Open for other instruments' SECCM files.

Opening such a file imports it into a store and shows that store exactly as
a native one is shown (``io.layers.scan_layer_data``). The store goes next
to the file, as ``<stem>.seccm.zarr``; when that name is taken by a store
imported from the same files (same sha256, same importer version) it is
opened again instead of imported again, and when it is taken by anything
else the next free ``<stem>-2.seccm.zarr``, ``-3`` ... is used: an existing
store is never replaced. When the file's folder cannot be written (read-only
media), the store goes to the user's cache folder,
``$XDG_CACHE_HOME/napari-seccm/imports/<hash of the files>/`` (default
``~/.cache``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._common import IMPORTER_VERSION


def _paths(path: str | list[str]) -> list[Path]:
    return [Path(p) for p in (path if isinstance(path, list) else [path])]


def get_reader(path: str | list[str]) -> Any:
    """A reader for files napari-seccm imports, or None (napari asks other
    readers: a plain TIFF, a CSV of another kind, a MATLAB file of another
    program)."""
    from . import detect_format

    paths = _paths(path)
    if not paths or any(p.is_dir() or not p.is_file() for p in paths):
        return None
    try:
        fmt = detect_format(paths)
    except Exception:
        return None
    if fmt == "heka-mat":
        from .heka_mat import has_traces

        if not any(has_traces(p) for p in paths if p.suffix.lower() == ".mat"):
            return None
    if fmt == "csv" and not _seccm_table(paths):
        return None
    return read_imported


def _seccm_table(paths: list[Path]) -> bool:
    """Does the CSV's header name positions and a current (with units)?"""
    from .csv_table import resolve_columns

    for p in paths:
        if p.suffix.lower() == ".json":
            continue
        try:
            with open(p, encoding="utf-8-sig") as f:
                head = next((ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")), "")
            delim = max((",", ";", "\t"), key=head.count)
            cols = resolve_columns([n.strip().strip('"') for n in head.split(delim)], {}, p)
        except Exception:
            return False
        if not ({"x", "y"} <= cols.keys() and cols.keys() & {"I", "value"}):
            return False
    return True


def store_for(paths: list[Path]) -> tuple[Path, bool]:
    """(the store for ``paths``, whether it already existed): see the module doc."""
    from ..images import file_sha256
    from . import import_files

    data = sorted(p for p in paths if p.suffix.lower() != ".json")
    first = data[0]
    sha = [file_sha256(p) for p in sorted(paths)]
    folder = first.parent
    if not os.access(folder, os.W_OK):
        import hashlib

        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        key = hashlib.sha256("".join(sha).encode()).hexdigest()[:16]
        folder = cache / "napari-seccm" / "imports" / key
        folder.mkdir(parents=True, exist_ok=True)
    stem = first.name.split(".")[0]
    for k in range(1, 1000):
        out = folder / (f"{stem}.seccm.zarr" if k == 1 else f"{stem}-{k}.seccm.zarr")
        if not out.exists():
            return import_files(paths, out), False
        if _same_import_any(out, paths, sha):
            return out, True
    raise FileExistsError(f"{folder}: {stem}.seccm.zarr to {stem}-999.seccm.zarr all exist")


def _same_import_any(out: Path, paths: list[Path], sha: list[str]) -> bool:
    """Was ``out`` imported from these files (in any order)?"""
    try:
        meta = json.loads((out / "zarr.json").read_text())["attributes"]["seccm"]
        imp = meta["imported"]
        return (
            meta.get("status") == "complete"
            and imp.get("importer_version") == IMPORTER_VERSION
            and sorted(s["sha256"] for s in imp["sources"][: len(paths)]) == sorted(sha)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_imported(path: str | list[str]) -> list[tuple]:
    """Import (or reopen the import of) the files and show the store."""
    from ..layers import scan_layer_data

    out, existed = store_for(_paths(path))
    try:
        from napari.utils.notifications import show_info

        show_info(
            f"{'opened the earlier import' if existed else 'imported into'} {out}"
            + ("" if existed else " (napari-seccm import; see docs/importing.md)")
        )
    except ImportError:  # no napari: scripts get the layers only
        pass
    return scan_layer_data(out)
