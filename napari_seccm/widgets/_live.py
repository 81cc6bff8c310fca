"""Scan layers in the viewer, and their live refresh while a scan writes them.

The acquisition thread never touches layers, and the GUI thread never waits
on the disk: the store's writer thread puts pixels into the zarr arrays; a
reader thread here reads those arrays back (only after new points were
written) into in-memory snapshots that the layers' lazy arrays serve while
the scan runs; a main-thread timer (25 Hz) refreshes the layers when a new
snapshot is there. Layers are never refreshed per pixel. When the scan ends
the layers read the zarr arrays directly again.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, QTimer

from ..io.layers import MAPS, ScaledArray, scan_layer_data

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
    for data, kwargs, kind in scan_layer_data(path):
        layers.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    return layers


def _limits(values: np.ndarray) -> tuple[float, float] | None:
    v = values[np.isfinite(values)]
    if v.size < 2:
        return None
    lo, hi = (float(x) for x in np.percentile(v, [1, 99]))
    return (lo, hi) if hi > lo else None


class LiveScanLayers(QObject):
    """Shows a running scan's maps as they fill in."""

    def __init__(self, viewer: napari.Viewer, scan: Scan, interval_ms: int = 40) -> None:
        super().__init__()
        self.viewer = viewer
        self.scan = scan
        self.layers = [
            lay
            for lay in add_store_layers(viewer, scan.store.path)
            if lay.metadata.get("seccm", {}).get("kind") in MAPS
        ]
        self.refreshes = 0
        # A garbage collection holds the interpreter for as long as it walks
        # every tracked object, and napari has hundreds of thousands: the
        # scan's allocations would trigger collections that stall the GUI for
        # ~100 ms. Objects that exist now are frozen out of collections until
        # the scan ends.
        gc.collect()
        gc.freeze()
        self._last_limits = 0.0
        self._last_thumb = 0.0
        self._new = threading.Event()  # a snapshot the layers have not shown yet
        self._stop = threading.Event()
        self._limits: dict[int, tuple[float, float]] = {}
        self._reader = threading.Thread(
            target=self._read_loop, name="seccm-live-reader", daemon=True
        )
        self._reader.start()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    # ------------------------------------------------------- reader thread
    def _read_loop(self) -> None:
        seen = -1
        while not self._stop.wait(0.04):
            writer = self.scan.writer
            written = writer.written if writer is not None else 0
            if written == seen:
                continue
            seen = written
            self._snapshot()

    def _snapshot(self) -> None:
        for layer in self.layers:
            data = layer.data
            if not isinstance(data, ScaledArray):
                continue
            snap = np.asarray(data.source[...], dtype=np.float32) * np.float32(data.factor)
            data.snapshot = snap  # an atomic swap: the GUI reads old or new
            lim = _limits(snap)
            if lim is not None:
                self._limits[id(layer)] = lim
        self._new.set()

    # ------------------------------------------------------------ GUI side
    def tick(self) -> None:
        if self._new.is_set():
            self._new.clear()
            now = time.monotonic()
            # contrast: once a second, or at once when the values outgrow it (a
            # map that starts saturated would otherwise stay so for a second)
            periodic = now - self._last_limits > 1.0
            thumbnail = now - self._last_thumb > 1.0
            if thumbnail:
                self._last_thumb = now
            for layer in self.layers:
                lim = self._limits.get(id(layer))
                if lim is not None:
                    lo, hi = layer.contrast_limits
                    span = hi - lo
                    outgrown = lim[0] < lo - 0.1 * span or lim[1] > hi + 0.1 * span
                    if (periodic or outgrown) and (lo, hi) != lim:
                        layer.contrast_limits = lim  # before the refresh: one redraw
                        self._last_limits = now
                # the extent never changes during a scan; the layer-list
                # thumbnail (a repaint of the list) follows once a second
                layer.refresh(thumbnail=thumbnail, highlight=False, extent=False)
            self.refreshes += 1
        if not self.scan.is_running() and self.scan.final_status is not None:
            self.stop()

    def stop(self) -> None:
        """Last update, then the layers read the store directly again."""
        if not self.timer.isActive():
            return
        self.timer.stop()
        gc.unfreeze()
        self._stop.set()
        self._reader.join(timeout=5)
        self._snapshot()  # everything the writer flushed
        for layer in self.layers:
            if isinstance(layer.data, ScaledArray):
                layer.data.snapshot = None
            layer.refresh()
            lim = self._limits.get(id(layer))
            if lim is not None:
                layer.contrast_limits = lim
