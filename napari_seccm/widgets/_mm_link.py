"""napari-micromanager and the SECCM widgets on one core, in one viewer.

napari-micromanager (the Micro-Manager plugin for napari) makes its own core
when it opens; the SECCM widgets make theirs. With real hardware both would
open the same devices. The link finds napari-micromanager's window in the
viewer (when either plugin opens first, and whenever napari-micromanager
switches cores) and makes them share one:

- napari-micromanager opened after the SECCM widgets: it gets the SECCM
  core (``MainWindow.set_core(core, owns=False)``: the SECCM session keeps
  the core's life);
- napari-micromanager opened first, with a config loaded: its devices are
  unloaded (freeing the hardware), the SECCM core takes their place in both
  plugins, and the same config is loaded into it once;
- a config loaded later in either plugin lands in the one core (both follow
  the core's ``systemConfigurationLoaded``); if napari-micromanager swaps
  cores for a config (it does for one without ``#py`` devices), the SECCM
  widgets follow its new core, after unloading the old one's devices.

Its live/snap ``preview`` layer is drawn in pixels at the origin; linked, it
is placed where the camera looks, in micrometres (the stage position and the
core's pixel size, as the Rig's snapshots), below the SECCM maps, so that
the maps stay visible and napari sees one unit.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer

if TYPE_CHECKING:
    from ._session import Session

log = logging.getLogger(__name__)

#: how often the viewer is looked at for napari-micromanager's window, ms
CHECK_MS = 500


def mm_window(viewer: Any) -> Any:
    """napari-micromanager's main window in ``viewer``, or None (also when
    napari-micromanager is not installed)."""
    try:
        from napari_micromanager.main_window import MainWindow
    except ImportError:
        return None
    qt_window = getattr(viewer.window, "_qt_window", None)
    if qt_window is None:
        return None
    return qt_window.findChild(MainWindow)


def original_load(core: Any) -> Any:
    """The core's own ``loadSystemConfiguration`` (napari-micromanager wraps
    it on the cores it holds, and swaps cores inside the wrapper)."""
    return getattr(core, "_nmm_original_loadSystemConfiguration", core.loadSystemConfiguration)


class MMLink(QObject):
    """Keeps a session's core and napari-micromanager's the same."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self._session = weakref.ref(session)
        self._linked: Any = None  # the core both plugins drive, once linked
        self._xy: tuple[float, float] | None = None
        self._xy_events: Any = None
        self._preview: Any = None
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()
        # a closed viewer's session must not keep looking (a test run opens
        # hundreds of viewers; each look walks the window's widgets)
        with contextlib.suppress(Exception):
            session.viewer.window._qt_window.destroyed.connect(self._timer.stop)
        self._muted: Any = None  # napari-micromanager's frame handler, off during a scan
        self._mm_frame_slot: Any = None
        session.coreChanged.connect(self._on_core)
        session.scanStarted.connect(lambda *_: self._mute_frames(True))
        session.scanFinished.connect(lambda *_: self._mute_frames(False))

    @property
    def linked(self) -> bool:
        s = self._session()
        return s is not None and s.core is not None and self._linked is s.core

    def check(self) -> None:
        """Find napari-micromanager's window and make both use one core."""
        session = self._session()
        if session is None:
            self._timer.stop()
            return
        try:
            viewer = session.viewer
        except RuntimeError:
            self._timer.stop()
            return
        win = mm_window(viewer)
        if win is None:
            return
        theirs, ours = win.core, session.core
        if theirs is ours and ours is not None:
            if self._linked is not ours:
                self._linked = ours
                self._follow(ours, viewer)
            return
        try:
            if self._linked is not None and ours is self._linked:
                # napari-micromanager swapped cores (a config loaded there): follow
                log.info("napari-micromanager switched cores: the SECCM widgets follow")
                with contextlib.suppress(Exception):
                    ours.unloadAllDevices()
                self._linked = theirs
                session.use_core(theirs)
            elif ours is None:
                # it came first: our core in its place, its config loaded once
                cfg = theirs.systemConfigurationFile() or ""
                with contextlib.suppress(Exception):
                    theirs.unloadAllDevices()
                from ..configs import new_core

                core = new_core()
                win.set_core(core, owns=False)
                self._linked = core
                session.use_core(core)
                if cfg:
                    session.load_config(cfg)
            else:
                # it came after: it drives our core (its own, empty, goes)
                with contextlib.suppress(Exception):
                    if theirs.getLoadedDevices() != ("Core",):
                        theirs.unloadAllDevices()
                win.set_core(ours, owns=False)
                self._linked = ours
        except RuntimeError as e:  # e.g. "Cannot swap core while MDA is running"
            log.warning("napari-micromanager and the SECCM widgets not linked yet: %s", e)
            return
        self._follow(self._linked, viewer)

    # ----------------------------------------------------------- MDA frames
    def _mute_frames(self, on: bool) -> None:
        """A hopping scan runs on the core's MDA runner, and its frames are
        current traces, not camera images: napari-micromanager would show
        every one of them in its preview layer (a draw per landing on the GUI
        thread). Its frame handler is disconnected while a SECCM scan runs.
        (Any thread: the handler was found on the GUI thread beforehand.)"""
        if not self.linked:
            return
        core = self._linked
        slot = self._mm_frame_slot
        if on:
            if slot is not None and self._muted is None:
                with contextlib.suppress(TypeError, RuntimeError, ValueError):
                    core.mda.events.frameReady.disconnect(slot)
                    self._muted = slot
        elif self._muted is not None:
            slot, self._muted = self._muted, None
            with contextlib.suppress(TypeError, RuntimeError, ValueError):
                core.mda.events.frameReady.connect(slot)

    def _find_frame_slot(self, viewer: Any) -> None:
        """(GUI thread.) napari-micromanager's frame handler, to be muted."""
        win = None
        with contextlib.suppress(RuntimeError):
            win = mm_window(viewer)
        handler = getattr(getattr(win, "_core_link", None), "_mda_handler", None)
        slot = getattr(handler, "_on_mda_frame", None)
        if slot is not None:
            self._mm_frame_slot = slot

    def _on_sequence_started(self, *_: Any) -> None:
        from ..acquisition.engine import HoppingEngine

        if self.linked and isinstance(getattr(self._linked.mda, "engine", None), HoppingEngine):
            self._mute_frames(True)

    def _on_sequence_finished(self, *_: Any) -> None:
        self._mute_frames(False)

    # ------------------------------------------------------------- preview
    def _on_core(self, core: Any) -> None:
        if self.linked:
            with contextlib.suppress(RuntimeError):
                viewer = self._session().viewer
                self._follow(core, viewer)
                self._show_config(viewer, core)

    @staticmethod
    def _show_config(viewer: Any, core: Any) -> None:
        """napari-micromanager's config field shows the config the shared core
        has loaded (it shows only what was loaded through it otherwise)."""
        try:
            from pymmcore_widgets import ConfigurationWidget
        except ImportError:
            return
        win = mm_window(viewer)
        cfg = core.systemConfigurationFile() or ""
        if win is None or not cfg:
            return
        for w in win.findChildren(ConfigurationWidget):
            w.cfg_LineEdit.setText(cfg)

    def _follow(self, core: Any, viewer: Any) -> None:
        """Track the stage position (events) and place the preview layer."""
        if self._xy_events is not core.events:
            old, self._xy_events = self._xy_events, core.events
            if old is not None:
                with contextlib.suppress(TypeError, RuntimeError, ValueError):
                    old.XYStagePositionChanged.disconnect(self._on_xy)
            core.events.XYStagePositionChanged.connect(self._on_xy)
            # a scan started by a script on the shared core (the widgets say so
            # themselves through the session): muted in the runner's thread,
            # before its first frame, not when the GUI thread gets to it
            direct = (
                (Qt.ConnectionType.DirectConnection,)
                if isinstance(core.mda.events, QObject)
                else ()
            )
            core.mda.events.sequenceStarted.connect(self._on_sequence_started, *direct)
            core.mda.events.sequenceFinished.connect(self._on_sequence_finished, *direct)
            self._xy = None
        self._find_frame_slot(viewer)
        if self._xy is None:  # (a config may have been loaded since)
            with contextlib.suppress(Exception):
                if core.getXYStageDevice():
                    self._xy = tuple(float(v) for v in core.getXYPosition())
        if self._preview is None:
            viewer.layers.events.inserted.connect(self._on_inserted)
            self._preview = True
        if "preview" not in viewer.layers and self._xy is not None:
            # napari-micromanager fills a layer named 'preview' if there is
            # one: made here in um (hidden until the first image), napari never
            # sees a layer in pixels beside the maps ("Inconsistent units")
            with contextlib.suppress(Exception):
                if core.getCameraDevice():
                    h, w = int(core.getImageHeight()), int(core.getImageWidth())
                    layer = viewer.add_image(
                        np.zeros((h, w), dtype=np.uint16),
                        name="preview",
                        units=("micrometer", "micrometer"),
                        colormap="gray",
                        visible=False,
                        metadata={"mode": "preview"},
                    )
                    layer.events.data.connect(lambda *_: _first_image(layer))
        if "preview" in viewer.layers:
            self._watch(viewer.layers["preview"])

    def _on_xy(self, label: str, x: float, y: float) -> None:
        self._xy = (float(x), float(y))

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        if getattr(layer, "name", "") == "preview":
            self._watch(layer)

    def _watch(self, layer: Any) -> None:
        if getattr(layer, "_seccm_placed", False):
            self.place(layer)
            return
        layer._seccm_placed = True
        layer.events.data.connect(lambda *_: self.place(layer))
        layer.events.scale.connect(lambda *_: self.place(layer))
        self.place(layer)
        session = self._session()
        if session is not None:
            with contextlib.suppress(Exception):
                layers = session.viewer.layers
                layers.move(layers.index(layer), 0)  # below the maps

    def place(self, layer: Any) -> None:
        """The preview where the camera looks, in um (nothing without a pixel size)."""
        session = self._session()
        core = None if session is None else session.core
        if core is None or not self.linked or self._xy is None:
            return
        try:
            ps = float(core.getPixelSizeUm())
            aff = tuple(core.getPixelSizeAffine())
        except Exception:
            return
        if not ps > 0:
            return
        from ..io.layers import optical_affine

        shape = np.shape(layer.data)[-2:]
        full = optical_affine(self._xy[0], self._xy[1], shape, ps, aff)
        sy, sx = (float(v) for v in layer.scale[-2:])
        # napari applies the layer's scale first: divide it out of the affine
        want = full @ np.diag([1.0 / sy if sy else 1.0, 1.0 / sx if sx else 1.0, 1.0])
        if not np.allclose(np.asarray(layer.affine.affine_matrix)[-3:, -3:], want):
            layer.affine = want
        if tuple(layer.units[-2:]) != ("micrometer", "micrometer"):
            with contextlib.suppress(Exception):
                layer.units = ("micrometer", "micrometer")


def _first_image(layer: Any) -> None:
    """The first image in the pre-made preview layer: show it, at its contrast."""
    if not layer.visible:
        layer.visible = True
        with contextlib.suppress(Exception):
            data = np.asarray(layer.data, dtype=float)
            lo, hi = (float(v) for v in np.nanpercentile(data, [0.5, 99.5]))
            if hi > lo:
                layer.contrast_limits_range = (float(np.nanmin(data)), float(np.nanmax(data)))
                layer.contrast_limits = (lo, hi)
