"""Scan layers in the viewer, and their live refresh while a scan writes them.

The acquisition thread never touches layers. The store's writer thread puts
pixels in the zarr arrays that the layers read; a main-thread timer (25 Hz)
refreshes the layers when the number of written points has changed. Layers
are never refreshed per pixel.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, QTimer

from ..io.layers import MAPS, map_layer_kwargs, scan_layer_data

if TYPE_CHECKING:
    import napari

    from ..acquisition.scan import Scan


def find_store_layers(viewer: napari.Viewer, path: str | Path) -> list[Any]:
    key = str(Path(path).resolve())
    return [lay for lay in viewer.layers if lay.metadata.get("seccm", {}).get("store") == key]


def add_store_layers(viewer: napari.Viewer, path: str | Path) -> list[Any]:
    """Add (or re-use) the map layers of a store; returns them."""
    existing = find_store_layers(viewer, path)
    if existing:
        return existing
    layers = []
    for data, kwargs, _kind in scan_layer_data(path):
        layers.append(viewer.add_image(data, **kwargs))
    return layers


class LiveScanLayers(QObject):
    """Refreshes a running scan's layers on a main-thread timer."""

    def __init__(self, viewer: napari.Viewer, scan: Scan, interval_ms: int = 40) -> None:
        super().__init__()
        from ..acquisition.store import ScanStore

        self.viewer = viewer
        self.scan = scan
        self.layers = add_store_layers(viewer, scan.store.path)
        self._reader = ScanStore.open(scan.store.path)
        self._seen = -1
        self._last_limits = 0.0
        self.refreshes = 0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def tick(self) -> None:
        writer = self.scan.writer
        written = writer.written if writer is not None else 0
        if written != self._seen:
            self._seen = written
            for layer in self.layers:
                layer.refresh()
            self.refreshes += 1
            now = time.monotonic()
            if now - self._last_limits > 1.0:
                self._last_limits = now
                self.update_contrast()
        if not self.scan.is_running() and self.scan.final_status is not None:
            self.stop()

    def update_contrast(self) -> None:
        for layer in self.layers:
            kind = layer.metadata.get("seccm", {}).get("kind")
            if kind in MAPS:
                lo, hi = map_layer_kwargs(self._reader, kind)["contrast_limits"]
                if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
                    layer.contrast_limits_range = (lo, hi)
                    layer.contrast_limits = (lo, hi)

    def stop(self) -> None:
        if self.timer.isActive():
            self.timer.stop()
            for layer in self.layers:
                layer.refresh()
            self.update_contrast()
