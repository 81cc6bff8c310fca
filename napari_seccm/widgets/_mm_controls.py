"""pymmcore-widgets on the SECCM core: the property browser, the stages (with
"Set as default") and the configuration groups, in one window of the Rig's.

The widgets are pymmcore-widgets' own, on the session's core, so they follow
its events like napari-micromanager's do. What this window adds:

- icons without a network (:mod:`.offline_icons`): an instrument PC is often
  offline, and the widgets fetch their icons at run time;
- a status line: pymmcore-widgets resets a refused value silently (a Z target
  beyond the travel, a speed above the limit, a move refused by the contact
  interlock); the core announces every refusal (``refused``), shown here and
  in the Rig's status line;
- while a scan runs the controls are read-only (a setting changed mid-scan
  would make the stored points disagree with the rig snapshot), and say so.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from ._qt import status_label

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

    from ._session import Session

#: the stage widgets' step (um): a pipette is jogged in small steps
JOG_STEP_UM = 1.0
SCAN_LOCK = "a scan is running: the controls are read-only until it ends"


def refusal_text(what: str, why: str) -> str:
    """One status line for a refused core call."""
    return f"refused: {what}: {why}"


def on_gui_refusal(core: Any, slot: Any) -> Any:
    """Connect ``slot(what, why)`` to the core's refusals made on the GUI
    thread (by clients without a status line of their own: pymmcore-widgets,
    napari-micromanager, the console). The SECCM widgets' own calls run on
    worker threads and say their errors themselves. Returns a disconnector."""
    sig = getattr(core, "refused", None)
    if sig is None:  # a core not made by configs.new_core
        return lambda: None

    def filt(what: str, why: str) -> None:
        if threading.current_thread() is threading.main_thread():
            slot(what, why)

    sig.connect(filt)

    def disconnect() -> None:
        with contextlib.suppress(Exception):
            sig.disconnect(filt)

    return disconnect


class MicroManagerControls(QWidget):
    """pymmcore-widgets' PropertyBrowser, StageWidgets and GroupPresetTableWidget
    on the SECCM core, with a status line."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        from .offline_icons import fail_fast_when_offline, provide_offline_icons

        provide_offline_icons()
        fail_fast_when_offline()
        from pymmcore_widgets import GroupPresetTableWidget, PropertyBrowser, StageWidget

        super().__init__(parent)
        # a window of its own, but a child of napari's: it gets napari's theme
        self.setWindowFlag(Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle("Micro-Manager controls (pymmcore-widgets)")
        self.session = session
        core: CMMCorePlus = session.ensure_core()
        self.tabs = QTabWidget()
        self.properties = PropertyBrowser(mmcore=core)
        self.tabs.addTab(self.properties, "Properties")
        stages = QWidget()
        slay = QVBoxLayout(stages)
        self.stages: dict[str, Any] = {}
        for dev in (core.getXYStageDevice(), core.getFocusDevice()):
            if dev:
                self.stages[dev] = StageWidget(dev, mmcore=core)
                # pymmcore-widgets' 10 um default is a long way for a pipette
                self.stages[dev].setStep(JOG_STEP_UM)
                slay.addWidget(QLabel(f"<b>{dev}</b> (um, stage frame)"))
                slay.addWidget(self.stages[dev])
        if not self.stages:
            slay.addWidget(QLabel("no XY stage or focus device in this configuration"))
        slay.addStretch()
        self.tabs.addTab(stages, "Stages")
        self.presets = GroupPresetTableWidget(mmcore=core)
        self.tabs.addTab(self.presets, "Configuration groups")
        self.status = status_label()
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.status)
        self._disconnect = on_gui_refusal(core, self._on_refused)
        session.scanStarted.connect(self._on_scan_started)
        session.scanFinished.connect(self._on_scan_finished)
        self.destroyed.connect(lambda *_: self._disconnect())
        scan = session.scan
        if scan is not None and scan.is_running():
            self._on_scan_started(scan)

    def _on_refused(self, what: str, why: str) -> None:
        self.status.setStyleSheet("color: #e06c6c;")
        self.status.setText(refusal_text(what, why))

    def _on_scan_started(self, *_: Any) -> None:
        self.tabs.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText(SCAN_LOCK)

    def _on_scan_finished(self, status: str) -> None:
        self.tabs.setEnabled(True)
        self.status.setStyleSheet("")
        self.status.setText(f"the scan ended ({status}): the controls accept changes again")
