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


#: how often a running voltammetric scan's potential-browsed layer takes in the
#: points measured since (s): each time its traces are read again, off the GUI thread
VOLT_REFRESH_S = 2.0


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
        shown = add_store_layers(viewer, scan.store.path)
        self.layers = [lay for lay in shown if lay.metadata.get("seccm", {}).get("kind") in MAPS]
        #: layers browsed by potential: a new stack (the points measured since)
        #: is read in the reader thread every VOLT_REFRESH_S (longer when that
        #: read is slow) and swapped in
        self.volt_layers = [
            lay for lay in shown if lay.metadata.get("seccm", {}).get("kind") == "voltammetric"
        ]
        self._volt_new: dict[int, Any] = {}
        self._volt_next = 0.0  # time.monotonic() of the next stack read
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
            if self.volt_layers and time.monotonic() >= self._volt_next:
                t0 = time.monotonic()
                self._read_stacks()
                # every stack reads all traces again: on a big map that takes a
                # while, and the reader never spends more than a fifth of its time on it
                self._volt_next = t0 + max(VOLT_REFRESH_S, 5.0 * (time.monotonic() - t0))

    def _read_stacks(self) -> None:
        """(Reader thread.) A fresh stack per voltammetric layer, its traces
        read here (never by the GUI thread's slicing), for the timer to swap in."""
        from ..acquisition.store import ScanStore
        from ..analysis.voltammetry import PotentialStack

        try:
            store = ScanStore.open(self.scan.store.path, validate=False)
        except Exception:  # read again at the next interval
            return
        for layer in self.volt_layers:
            old = layer.data
            stack = PotentialStack(store, factor=getattr(old, "factor", 1e9))
            step = self.viewer.dims.current_step  # ints: safe to read from here
            seg, k = (int(v) for v in step[:2]) if len(step) >= 2 else (0, 0)
            seg = min(max(seg, 0), stack.shape[0] - 1)
            k = min(max(k, 0), stack.shape[1] - 1)
            stack.point_values(seg, k)  # the traces into the stack's cache
            self._volt_new[id(layer)] = (stack, stack.contrast_limits())
        self._new.set()

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
            self._swap_stacks(periodic)
            self.refreshes += 1
        if not self.scan.is_running() and self.scan.final_status is not None:
            self.stop()

    def _swap_stacks(self, limits: bool) -> None:
        """(GUI thread.) The stacks the reader prepared replace the layers' data."""
        for layer in self.volt_layers:
            new = self._volt_new.pop(id(layer), None)
            if new is None:
                continue
            stack, lim = new
            if limits and lim[1] > lim[0]:
                layer.contrast_limits = lim  # before the data: one redraw
            layer.data = stack

    def stop(self) -> None:
        """Last update, then the layers read the store directly again."""
        if not self.timer.isActive():
            return
        self.timer.stop()
        gc.unfreeze()
        self._stop.set()
        self._reader.join(timeout=5)
        self._snapshot()  # everything the writer flushed
        if self.volt_layers:
            self._read_stacks()
            self._swap_stacks(True)
        for layer in self.layers:
            if isinstance(layer.data, ScaledArray):
                layer.data.snapshot = None
            layer.refresh()
            lim = self._limits.get(id(layer))
            if lim is not None:
                layer.contrast_limits = lim
