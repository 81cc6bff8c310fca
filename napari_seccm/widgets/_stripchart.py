"""A scrolling strip chart drawn with QPainter: the live current and Z.

A matplotlib canvas costs ~27 ms a redraw here (software rendering); at the
live plot's 10 Hz that is a quarter of the GUI thread while a scan runs, and
napari's own drawing shares that thread. This chart draws a few polylines and
labels, well under a millisecond, so the live traces never slow the viewer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from .._format import si

if TYPE_CHECKING:
    from collections.abc import Sequence

#: room for the value labels on the left and the time axis at the bottom (px)
LEFT_PX, BOTTOM_PX, GAP_PX = 64, 16, 6


class Channel:
    """One trace of the chart: its name, unit, colour and decimated samples."""

    def __init__(self, name: str, unit: str, color: str) -> None:
        self.name, self.unit, self.color = name, unit, QColor(color)
        self.t = np.empty(0)
        self.y = np.empty(0)

    def get_data(self) -> tuple[np.ndarray, np.ndarray]:
        """(t in s, values in ``unit``) as drawn."""
        return self.t, self.y

    def limits(self) -> tuple[float, float]:
        v = self.y[np.isfinite(self.y)]
        if not v.size:
            return (0.0, 1.0)
        lo, hi = float(v.min()), float(v.max())
        if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
            pad = abs(hi) * 0.05 or 1.0
            return lo - pad, hi + pad
        pad = 0.05 * (hi - lo)
        return lo - pad, hi + pad


class StripChart(QWidget):
    """Channels stacked in bands over a shared time axis (the last ``window_s``)."""

    def __init__(
        self,
        channels: Sequence[tuple[str, str, str]],
        window_s: float,
        height_px: int = 170,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.channels = [Channel(*c) for c in channels]
        self.window_s = float(window_s)
        self.t_end = math.nan
        self.setFixedHeight(height_px)
        self.setMinimumWidth(0)
        # as wide as the dock, never wider
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def plot_width_px(self) -> int:
        return max(self.width() - LEFT_PX - GAP_PX, 50)

    def set_channel(self, k: int, t: np.ndarray, y: np.ndarray) -> None:
        """Channel ``k``'s (already decimated) samples: t in s, y in its unit."""
        self.channels[k].t, self.channels[k].y = np.asarray(t, float), np.asarray(y, float)

    def show_until(self, t_end: float) -> None:
        """Repaint once, the time axis ending at ``t_end`` (s)."""
        self.t_end = float(t_end)
        self.update()

    # ------------------------------------------------------------- drawing
    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            fg = self.palette().color(self.foregroundRole())
            grid = QColor(fg)
            grid.setAlpha(60)
            w, h = self.width(), self.height()
            x0, x1 = LEFT_PX, w - GAP_PX
            n = len(self.channels)
            band = (h - BOTTOM_PX) / max(n, 1)
            t1 = self.t_end if math.isfinite(self.t_end) else self.window_s
            t0 = t1 - self.window_s
            sx = (x1 - x0) / self.window_s
            fm = p.fontMetrics()
            for k, ch in enumerate(self.channels):
                top, bottom = k * band + 2, (k + 1) * band - 4
                lo, hi = ch.limits()
                p.setPen(QPen(grid))
                p.drawRect(QRectF(x0, top, x1 - x0, bottom - top))
                p.setPen(QPen(fg))
                p.drawText(QPointF(2, top + fm.ascent()), si(hi, ch.unit))
                p.drawText(QPointF(2, bottom), si(lo, ch.unit))
                p.setPen(QPen(ch.color))
                p.drawText(QPointF(2, (top + bottom) / 2 + fm.ascent() / 2), ch.name)
                ok = np.isfinite(ch.t) & np.isfinite(ch.y)
                if ok.sum() < 2:
                    continue
                xs = x0 + (ch.t[ok] - t0) * sx
                ys = bottom - (ch.y[ok] - lo) / (hi - lo) * (bottom - top)
                pen = QPen(ch.color)
                pen.setWidthF(1.2)
                p.setPen(pen)
                p.setClipRect(QRectF(x0, top, x1 - x0, bottom - top))
                p.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(xs, ys, strict=True)]))
                p.setClipping(False)
            p.setPen(QPen(fg))
            label = f"instrument time (s): {t0:.1f} to {t1:.1f}"
            p.drawText(
                QRectF(x0, h - BOTTOM_PX, x1 - x0, BOTTOM_PX),
                int(Qt.AlignmentFlag.AlignCenter),
                label,
            )
        finally:
            p.end()
