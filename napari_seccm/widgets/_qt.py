"""Small Qt helpers shared by the SECCM widgets (no icons: works offline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QDoubleSpinBox, QGroupBox, QLabel, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from collections.abc import Callable


def spin(
    value: float,
    lo: float,
    hi: float,
    *,
    step: float = 0.1,
    decimals: int = 3,
    suffix: str = "",
    tooltip: str = "",
) -> QDoubleSpinBox:
    """A spin box with its unit as suffix (every number shows its unit)."""
    w = QDoubleSpinBox()
    w.setDecimals(decimals)
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    if suffix:
        w.setSuffix(f" {suffix}")
    if tooltip:
        w.setToolTip(tooltip)
    w.setKeyboardTracking(False)
    return w


def readout_label(text: str = "") -> QLabel:
    """A label updated often (positions, progress): its size never depends on
    its text, so an update repaints the label alone instead of laying out and
    repainting the whole dock (costly with napari's style sheet)."""
    from qtpy.QtWidgets import QSizePolicy

    lab = QLabel(text)
    lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    lab.setMinimumHeight(lab.sizeHint().height())
    return lab


def group(title: str, *widgets: QWidget, layout: Any = None) -> QGroupBox:
    box = QGroupBox(title)
    lay = layout or QVBoxLayout()
    for w in widgets:
        lay.addWidget(w)
    box.setLayout(lay)
    return box


def status_label() -> QLabel:
    lab = QLabel("")
    lab.setWordWrap(True)
    lab.setTextInteractionFlags(lab.textInteractionFlags())
    return lab


def run_in_thread(
    func: Callable[[], Any],
    on_done: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_finished: Callable[[], None] | None = None,
) -> Any:
    """Run ``func`` on a worker thread; callbacks arrive on the main thread."""
    from superqt.utils import create_worker

    # with our own error handler, superqt must not re-raise into the event loop
    worker = create_worker(func, _ignore_errors=on_error is not None)
    if on_done is not None:
        worker.returned.connect(on_done)
    if on_error is not None:
        worker.errored.connect(on_error)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def scroll_layout(widget: QWidget, footer: tuple[QWidget, ...] = ()) -> QVBoxLayout:
    """Give ``widget`` a scrollable body; returns the body's layout.

    Docked side by side, the SECCM widgets can then share a small screen.
    ``footer`` widgets (e.g. run controls, progress, status) stay in view
    below the scrolling body.
    """
    from qtpy.QtWidgets import QFrame, QScrollArea

    body = QWidget()
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(body)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area, 1)
    if footer:
        foot = QVBoxLayout()
        foot.setContentsMargins(9, 0, 9, 6)
        for w in footer:
            foot.addWidget(w)
        outer.addLayout(foot)
    return QVBoxLayout(body)


def format_range(a: float) -> str:
    """A current range with its unit, e.g. 10 nA, 1 uA, 100 pA."""
    for unit, f in (("mA", 1e-3), ("uA", 1e-6), ("nA", 1e-9), ("pA", 1e-12)):
        if abs(a) >= f * 0.999:
            return f"{a / f:g} {unit}"
    return f"{a:g} A"


def fill_ranges(combo: Any, ranges: list[float], current: float) -> None:
    """A current-range combo: ``ranges`` (and ``current``) with units, sorted,
    ``current`` selected; no signal is emitted (nothing is set on the rig)."""
    vals = sorted({*(float(r) for r in ranges), float(current)})
    combo.blockSignals(True)
    combo.clear()
    for r in vals:
        combo.addItem(format_range(r), r)
    combo.setCurrentIndex(vals.index(float(current)))
    combo.blockSignals(False)


def _say_failure(widget: Any, what: str, e: BaseException) -> None:
    import logging

    logging.getLogger(__name__).exception("%s failed", what)
    say = getattr(widget, "_say", None)
    if say is not None:
        say(f"{what} failed: {e}", error=True)


def guarded(widget: Any, what: str, fn: Any) -> Any:
    """A slot for a button: ``fn()``, and whatever it raises said in the
    widget's status line (``widget._say``) instead of vanishing into the Qt
    event loop (and logged with its traceback)."""

    def slot(*_: Any) -> Any:
        try:
            return fn()
        except Exception as e:
            _say_failure(widget, what, e)
            return None

    return slot


def says_failures(what: str) -> Any:
    """For a widget method called by a timer or by napari's layer events:
    whatever it raises is said in the widget's status line (not a napari
    toast, not only a log line). The method stays a method, so napari's
    events still hold it weakly."""
    import functools

    def decorate(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as e:
                _say_failure(self, what, e)
                return None

        return wrapper

    return decorate
