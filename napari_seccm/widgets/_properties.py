"""A device property browser that needs no network.

pymmcore-widgets' PropertyBrowser fetches an icon per row from an icon
service, which freezes the GUI on an offline instrument PC; this table shows
every device property with its unit-bearing name, value, limits or allowed
values, and lets writable ones be edited (the change runs on a worker thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._qt import run_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from pymmcore_plus import CMMCorePlus

COLUMNS = ("device", "property", "value", "limits / allowed", "")


def _show(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.shape}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class DevicePropertyTable(QWidget):
    """Every property of every loaded device; writable values are editable."""

    def __init__(
        self,
        core: CMMCorePlus,
        parent: QWidget | None = None,
        locked: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(parent)
        # a window of its own, but a child of napari's: it gets napari's theme
        self.setWindowFlag(Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        #: why edits are refused now ('' when they are allowed), e.g. a scan runs
        self.locked = locked or (lambda: "")
        self.setWindowTitle("SECCM device properties")
        self.core = core
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter by device or property…")
        self.filter.textChanged.connect(self._apply_filter)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.filter)
        lay.addWidget(self.table)
        lay.addWidget(self.status)
        self._workers: list[Any] = []
        self._loading = False
        self._shown: dict[tuple[str, str], str] = {}
        self.reload()
        self.table.itemChanged.connect(self._edited)

    def reload(self) -> None:
        """Read every property on a worker thread (a device may be busy, e.g.
        in a scan's approach), then fill the table."""
        self.status.setText("reading the devices…")
        self._workers.append(run_in_thread(self._read_rows, self._fill, self._read_failed))

    def _read_failed(self, e: BaseException) -> None:
        self.status.setText(f"could not read the devices: {e}")

    def _read_rows(self) -> list[tuple[str, str, Any, str, str]]:
        core = self.core
        rows: list[tuple[str, str, Any, str, str]] = []
        for dev in core.getLoadedDevices():
            for prop in core.getDevicePropertyNames(dev):
                try:
                    val = core.getProperty(dev, prop)
                except Exception as e:  # a device that cannot answer now
                    val = f"(unreadable: {e})"
                ro = core.isPropertyReadOnly(dev, prop)
                if core.hasPropertyLimits(dev, prop):
                    lim = f"{core.getPropertyLowerLimit(dev, prop):g} .. {core.getPropertyUpperLimit(dev, prop):g}"
                else:
                    allowed = core.getAllowedPropertyValues(dev, prop)
                    lim = ", ".join(allowed) if allowed else ""
                flags = "read-only" if ro else ""
                if core.isPropertyPreInit(dev, prop):
                    flags = (flags + " pre-init").strip()
                rows.append((dev, prop, val, lim, flags))
        return rows

    def _fill(self, rows: list[tuple[str, str, Any, str, str]]) -> None:
        self.status.setText("")
        self._loading = True
        self.table.setRowCount(len(rows))
        for r, (dev, prop, val, lim, flags) in enumerate(rows):
            self._shown[(dev, prop)] = _show(val)
            for c, text in enumerate((dev, prop, _show(val), lim, flags)):
                item = QTableWidgetItem(text)
                editable = c == 2 and not flags and not isinstance(val, np.ndarray)
                if not editable:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, c, item)
        self._loading = False
        self._apply_filter(self.filter.text())

    def _apply_filter(self, text: str) -> None:
        t = text.lower()
        for r in range(self.table.rowCount()):
            dev = self.table.item(r, 0).text().lower()
            prop = self.table.item(r, 1).text().lower()
            self.table.setRowHidden(r, bool(t) and t not in dev and t not in prop)

    def _edited(self, item: QTableWidgetItem) -> None:
        if self._loading or item.column() != 2:
            return
        r = item.row()
        dev, prop, text = self.table.item(r, 0).text(), self.table.item(r, 1).text(), item.text()
        core = self.core
        why = self.locked()
        if why:
            self.status.setText(f"{dev}.{prop} not changed: {why}")
            self._loading = True
            item.setText(self._shown.get((dev, prop), ""))
            self._loading = False
            return

        def done(_: Any) -> None:
            self._shown[(dev, prop)] = text
            self.status.setText(f"{dev}.{prop} = {text}")

        def error(e: BaseException) -> None:
            self.status.setText(f"{dev}.{prop} not changed: {e}")
            self._loading = True
            item.setText(_show(core.getProperty(dev, prop)))
            self._loading = False

        self._workers.append(run_in_thread(lambda: core.setProperty(dev, prop, text), done, error))
        self._workers = self._workers[-8:]
