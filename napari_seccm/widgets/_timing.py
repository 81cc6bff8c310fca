"""How responsive the GUI thread is: the lateness of a main-thread timer.

Used by the test suite and by ``benchmarks/bench_gui_latency.py``: a 10 ms
precise QTimer runs while something else happens; each tick's lateness (how
much later than 10 ms after the previous one it fired) is what a user feels
as a window that does not answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable


def timer_lateness_ms(run_events: Callable[[], None], interval_ms: int = 10) -> np.ndarray:
    """Lateness (ms) of each tick of a main-thread timer while ``run_events()``
    processes Qt events (e.g. ``qtbot.waitUntil(...)``) until its condition."""
    from qtpy.QtCore import Qt, QTimer

    period = interval_ms / 1000.0
    lateness: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lateness.append(max(0.0, now - last[0] - period))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(interval_ms)
    timer.timeout.connect(tick)
    last[0] = time.perf_counter()
    timer.start()
    try:
        run_events()
    finally:
        timer.stop()
    return np.asarray(lateness) * 1e3


def lateness_stats(lat: np.ndarray) -> str:
    p50, p99 = np.percentile(lat, [50, 99])
    return f"{lat.size} ticks, lateness p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat.max():.1f} ms"
