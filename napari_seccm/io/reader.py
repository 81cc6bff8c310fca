"""npe2 reader for SECCM scan stores (``*.seccm.zarr``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _is_store(path: str | Path) -> bool:
    """A SECCM scan store: a zarr v3 group whose attributes hold ``seccm``."""
    import json

    p = Path(path)
    meta = p / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return "seccm" in json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False


def get_reader(path: str | list[str]) -> Any:
    """Return a reader for a store, or None (napari then asks other readers)."""
    if isinstance(path, list):
        if not path or not all(_is_store(p) for p in path):
            return None
    elif not _is_store(path):
        return None
    return read_stores


def read_stores(path: str | list[str]) -> list[tuple]:
    from .layers import scan_layer_data

    paths = path if isinstance(path, list) else [path]
    layers: list[tuple] = []
    for p in paths:
        layers.extend(scan_layer_data(p))
    return layers
