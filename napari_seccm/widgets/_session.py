"""What the SECCM widgets of one napari viewer share: the core and the scan.

The Rig, Scan and Inspector widgets are docked separately (each from the
Plugins menu), yet drive one instrument: they find each other's state here,
keyed by the viewer. The core is created on first use, after the
QApplication exists, so its signals are Qt signals (safe across threads).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Signal

if TYPE_CHECKING:
    import napari
    from pymmcore_plus import CMMCorePlus

    from ..acquisition.scan import Scan

_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


class Session(QObject):
    """One instrument and its current scan, for one viewer."""

    #: a config was loaded (the new core)
    coreChanged = Signal(object)
    #: a scan started (the Scan object)
    scanStarted = Signal(object)
    #: a scan ended (its final status)
    scanFinished = Signal(str)
    #: a store's layers were added to the viewer (store path)
    storeShown = Signal(str)
    #: the emergency stop was latched (True) or reset (False)
    estopChanged = Signal(bool)
    #: a preflight's threshold chosen for the approach (A)
    thresholdSuggested = Signal(float)

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__()
        self._viewer = weakref.ref(viewer)
        self.core: CMMCorePlus | None = None
        self.config_path: str = ""
        self.scan: Scan | None = None
        self.live: Any = None
        self._failed_config = ""
        self._loading = False
        self._watched: Any = None
        #: what the last emergency stop did, one line per device
        self.estop_report: list[str] = []
        from ._mm_link import MMLink

        #: napari-micromanager in the same viewer drives this core too
        self.mm_link = MMLink(self)
        self.coreChanged.connect(self._watch_core)

    @property
    def viewer(self) -> napari.Viewer:
        v = self._viewer()
        if v is None:
            raise RuntimeError("the viewer is gone")
        return v

    def load_config(self, config: str) -> CMMCorePlus:
        """Load a Micro-Manager config into a new core (replacing the old one)."""
        from ..configs import config_path, load_core

        if self.scan is not None and self.scan.is_running():
            raise RuntimeError("a scan is running: stop it before loading another config")
        path = config_path(config)  # a missing file fails here, nothing unloaded
        self.mm_link.check()  # napari-micromanager's devices are freed first
        if self.mm_link.linked:
            # one core with napari-micromanager: the config goes into it (both
            # plugins follow its systemConfigurationLoaded)
            from ._mm_link import original_load

            core = self.core
            assert core is not None
            self._loading = True
            try:
                core.unloadAllDevices()
                original_load(core)(str(path))
            except BaseException:
                self._failed_config = str(path)
                raise
            finally:
                self._loading = False
            self._failed_config = ""
            self.config_path = str(path)
            self.coreChanged.emit(core)
            return core
        # the old devices go first: real hardware cannot be opened twice (a
        # serial port, a DAQ), and a simulated rig is shared by name
        old, self.core = self.core, None
        if old is not None:
            old.unloadAllDevices()
        try:
            core = load_core(path)
        except BaseException:
            self._failed_config = str(path)
            raise
        self._failed_config = ""
        self.core = core
        self.config_path = str(path)
        self.coreChanged.emit(core)
        self.mm_link.check()
        return core

    def ensure_core(self) -> CMMCorePlus:
        """The loaded core; the simulated SECCM if nothing was loaded yet."""
        if self.core is None:
            if self._failed_config:
                # never fall back to the simulator behind the back of a user
                # whose own rig failed to load
                raise RuntimeError(
                    f"no instrument: loading {self._failed_config} failed; load a config "
                    "in the Rig widget"
                )
            from ..configs import SIMULATED

            self.load_config(SIMULATED)
        assert self.core is not None
        return self.core

    def emergency_stop(self, reason: str = "emergency stop") -> list[str]:
        """Halt everything now and latch (see :func:`napari_seccm.emergency_stop`).
        Returns at once: no call waits on hardware."""
        from ..acquisition.control import emergency_stop

        if self.core is None:
            return []
        self.estop_report = []
        scan = self.scan
        if scan is not None and scan.is_running():
            # the scan latches first, then ends as a fault with this reason
            done = scan.emergency_stop(reason)
        else:
            done = emergency_stop(self.core, reason)
        self.estop_report = list(done or [])
        self.estopChanged.emit(True)
        return done

    def reset_emergency_stop(self) -> list[str]:
        from ..acquisition.control import reset_emergency_stop

        if self.core is None:
            return []
        out = reset_emergency_stop(self.core)
        self.estopChanged.emit(False)
        return out

    def latched_devices(self) -> list[str]:
        from ..acquisition.control import latched_devices

        return [] if self.core is None else latched_devices(self.core)

    def _watch_core(self, core: CMMCorePlus) -> None:
        """Follow config loads made on the core by others (napari-micromanager,
        a script): the widgets show the new devices at once."""
        if core is None or self._watched is core.events:
            return
        old, self._watched = self._watched, core.events
        if old is not None:
            with contextlib.suppress(TypeError, RuntimeError, ValueError):
                old.systemConfigurationLoaded.disconnect(self._on_config_loaded)
        core.events.systemConfigurationLoaded.connect(self._on_config_loaded)

    def _on_config_loaded(self, *_: Any) -> None:
        if self._loading or self.core is None:
            return  # our own load announces itself
        self.config_path = self.core.systemConfigurationFile() or ""
        self._failed_config = ""
        self.coreChanged.emit(self.core)

    def use_core(self, core: CMMCorePlus) -> None:
        """Drive an existing core (e.g. a script's, or napari-micromanager's)."""
        self.core = core
        self.config_path = core.systemConfigurationFile() or ""
        self.coreChanged.emit(core)


#: napari's reader-preference pattern for our stores (directories end in a separator)
STORE_READER_PATTERN = "*.seccm.zarr" + os.sep


def prefer_store_reader() -> bool:
    """Make napari-seccm napari's reader of ``*.seccm.zarr`` stores, unless the
    user has chosen one: napari's builtin reader also claims any ``*.zarr``, so
    opening or dropping a store would otherwise ask which plugin to use every
    time (and the builtin one shows raw arrays without scale or units). Only
    this pattern is touched; Preferences > Plugins can change it. Returns
    whether the preference was set now."""
    from napari.settings import get_settings

    plugins = get_settings().plugins
    if STORE_READER_PATTERN in plugins.extension2reader:
        return False
    plugins.extension2reader = {**plugins.extension2reader, STORE_READER_PATTERN: "napari-seccm"}
    return True


def get_session(viewer: napari.Viewer) -> Session:
    # napari hands each widget its own proxy of the viewer: key by the viewer
    viewer = getattr(viewer, "__wrapped__", viewer)
    if viewer not in _SESSIONS:
        from .offline_icons import fail_fast_when_offline, provide_offline_icons

        # icons for pymmcore-widgets and napari-micromanager on an offline PC:
        # drawn ones for the stage buttons, and no 2 s download attempt per icon
        provide_offline_icons()
        fail_fast_when_offline()
        _SESSIONS[viewer] = Session(viewer)
        prefer_store_reader()
    return _SESSIONS[viewer]
