"""The shipped Micro-Manager configurations, and loading a core from one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymmcore_plus.experimental.unicore import UniMMCore

SIMULATED = "seccm_simulated.cfg"
WITH_DEMO_MICROSCOPE = "seccm_with_demo_microscope.cfg"


def config_dir() -> Path:
    """Folder of the shipped configs (in a wheel: napari_seccm/_configs)."""
    here = Path(__file__).parent
    for cand in (here / "_configs", here.parent / "micromanager_config"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("the shipped Micro-Manager configs were not found")


def config_path(name_or_path: str | Path = SIMULATED) -> Path:
    """A shipped config by name, or any existing file path."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p.resolve()
    shipped = config_dir() / str(name_or_path)
    if shipped.exists():
        return shipped
    raise FileNotFoundError(
        f"Micro-Manager config {str(name_or_path)!r} not found (neither a file nor one of "
        f"the shipped configs: {sorted(x.name for x in config_dir().glob('*.cfg'))})"
    )


#: whether UniMMCore announces its Python devices' property sets itself (None:
#: not known yet; found at the first such set)
_UPSTREAM: dict[str, bool | None] = {"announces": None}


def new_core() -> UniMMCore:
    """An empty UniMMCore that routes ``setProperty('Core', 'Focus' | 'XYStage' |
    'Camera' | 'Shutter' | 'SLM', <Python device>)`` to the role setters.

    pymmcore-plus 0.18.1 passes those to the C++ core, which knows no Python
    device and refuses ("Cannot set Core property Focus to invalid value");
    pymmcore-widgets' StageWidget ("Set as default") and saved configs use them.
    Later pymmcore-plus releases route them the same way.

    It also announces a Python device's property set through it
    (``events.propertyChanged``), as the C++ core does for its devices:
    UniMMCore 0.18.1 does not, so a value changed by a script, the scan or
    another widget would not show in the widgets that follow the core's
    events. Whether the installed pymmcore-plus announces it itself is found
    at the first such set (then nothing is added).
    """
    import contextlib

    from psygnal import Signal
    from pymmcore_plus.core._constants import Keyword
    from pymmcore_plus.experimental.unicore import UniMMCore

    def announce(core: SECCMCore, what: str, e: BaseException) -> None:
        """Say a refusal once: a relative move calls the absolute one, and the
        exception passes through both (marked once said)."""
        if not getattr(e, "_seccm_announced", False):
            with contextlib.suppress(AttributeError, TypeError):
                e._seccm_announced = True  # type: ignore[attr-defined]
            core.refused.emit(what, str(e) or type(e).__name__)

    def announcing_refusal(name: str) -> Any:
        """``UniMMCore.<name>``, announcing through ``refused`` why a call was
        refused before it raises (nothing added to a call that succeeds)."""
        base = getattr(UniMMCore, name)

        def call(self: SECCMCore, *args: Any) -> Any:
            try:
                return base(self, *args)
            except Exception as e:
                announce(self, f"{name}({', '.join(repr(a) for a in args)})", e)
                raise

        call.__name__ = name
        call.__doc__ = base.__doc__
        return call

    class SECCMCore(UniMMCore):
        #: (call, why) whenever the core refuses a setting or a move, in the
        #: calling thread: a client without a status line of its own (a
        #: pymmcore-widgets widget, which resets a refused value silently;
        #: napari-micromanager; the console) still has its refusal shown
        refused = Signal(str, str)

        def loadSystemConfiguration(self, fileName: str | Path = "MMConfig_demo.cfg") -> None:
            """As UniMMCore's, but a Python device that fails to initialize
            fails the load, as a C++ device does (UniMMCore 0.18.1 initializes
            them in parallel, logs the failure and goes on: the device stays
            loaded, uninitialized, and takes roles and settings). Everything is
            unloaded again and the error names the device and why; so is a
            load that stops at a bad line (no half-loaded rig is left)."""
            try:
                super().loadSystemConfiguration(fileName)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.unloadAllDevices()
                raise
            failed = [
                (label, dev._initialized_)
                for label in self._pydevices
                if isinstance(
                    (dev := self._pydevices[label]).__dict__.get("_initialized_"), BaseException
                )
            ]
            if failed:
                with contextlib.suppress(Exception):
                    self.unloadAllDevices()
                why = "; ".join(f"{label}: {e}" for label, e in failed)
                raise RuntimeError(
                    f"Error in configuration file {str(fileName)!r}: "
                    f"{len(failed)} device(s) failed to initialize ({why}); nothing is loaded"
                ) from failed[0][1]

        setXYPosition = announcing_refusal("setXYPosition")
        setRelativeXYPosition = announcing_refusal("setRelativeXYPosition")
        setPosition = announcing_refusal("setPosition")
        setRelativePosition = announcing_refusal("setRelativePosition")
        setConfig = announcing_refusal("setConfig")

        def _clear_python_role(self, keyword: str, label: str) -> None:
            # UniMMCore 0.18.1 keeps a Python device in a role when the role
            # is given to a C++ device (or to none): getFocusDevice() would
            # still say the Python one
            if label not in self._pydevices:
                self._pycore.set_current(keyword, None)

        def setFocusDevice(self, focusLabel: str) -> None:
            self._clear_python_role(Keyword.CoreFocus, focusLabel)
            super().setFocusDevice(focusLabel)

        def setXYStageDevice(self, xyStageLabel: str) -> None:
            self._clear_python_role(Keyword.CoreXYStage, xyStageLabel)
            super().setXYStageDevice(xyStageLabel)

        def setCameraDevice(self, cameraLabel: str) -> None:
            self._clear_python_role(Keyword.CoreCamera, cameraLabel)
            super().setCameraDevice(cameraLabel)

        def getPropertyFromCache(self, deviceLabel: str, propName: str) -> Any:
            """As the C++ core gives it: a string (UniMMCore 0.18.1 gives a
            Python device's value typed, and pymmcore-widgets' preset combo,
            comparing it with a preset's string, then shows no match)."""
            value = super().getPropertyFromCache(deviceLabel, propName)
            if deviceLabel in self._pydevices and not isinstance(value, str):
                return str(value)
            return value

        def setProperty(self, label: str, propName: str, propValue: object) -> None:
            try:
                self._set_property(label, propName, propValue)
            except Exception as e:
                announce(self, f"{label}.{propName} = {propValue!r}", e)
                raise

        def _set_property(self, label: str, propName: str, propValue: object) -> None:
            if label == Keyword.CoreDevice:
                setter = {
                    Keyword.CoreFocus: self.setFocusDevice,
                    Keyword.CoreCamera: self.setCameraDevice,
                    Keyword.CoreXYStage: self.setXYStageDevice,
                    Keyword.CoreShutter: self.setShutterDevice,
                    Keyword.CoreSLM: self.setSLMDevice,
                }.get(propName)
                if setter is not None:
                    setter(str(propValue))
                    return
            if label not in self._pydevices or _UPSTREAM["announces"]:
                super().setProperty(label, propName, propValue)  # type: ignore[arg-type]
                return
            if _UPSTREAM["announces"] is None:
                seen: list[bool] = []

                def probe(dev: str, prop: str, *_: object) -> None:
                    if (dev, prop) == (label, propName):
                        seen.append(True)

                self.events.propertyChanged.connect(probe)
                try:
                    super().setProperty(label, propName, propValue)  # type: ignore[arg-type]
                finally:
                    self.events.propertyChanged.disconnect(probe)
                _UPSTREAM["announces"] = bool(seen)
                if seen:
                    return
            else:
                super().setProperty(label, propName, propValue)  # type: ignore[arg-type]
            self.events.propertyChanged.emit(label, propName, self.getProperty(label, propName))

    return SECCMCore()


def load_core(
    config: str | Path = SIMULATED, *, quiet: bool = True, signals: str | None = None
) -> UniMMCore:
    """A UniMMCore with ``config`` loaded (the simulated SECCM by default).

    ``quiet`` lowers pymmcore-plus's per-event debug logging, which otherwise
    costs more than a simulated hop. ``signals``: ``"qt"``, ``"psygnal"`` or
    None (pymmcore-plus chooses: Qt signals when a QApplication exists, which
    are delivered by its event loop; a script that has a QApplication but
    runs no event loop should ask for ``"psygnal"``).
    """
    import os

    if quiet:
        logging.getLogger("pymmcore-plus").setLevel(logging.WARNING)
    old = os.environ.get("PYMM_SIGNALS_BACKEND")
    if signals is not None:
        os.environ["PYMM_SIGNALS_BACKEND"] = signals
    try:
        core = new_core()
    finally:
        if signals is not None:
            if old is None:
                del os.environ["PYMM_SIGNALS_BACKEND"]
            else:
                os.environ["PYMM_SIGNALS_BACKEND"] = old
    core.loadSystemConfiguration(str(config_path(config)))
    return core
