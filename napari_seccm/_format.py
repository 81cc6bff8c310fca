"""Formatting numbers with their units for people (CLI and widgets)."""

from __future__ import annotations

import math


def format_duration(seconds: float, *, compact: bool = False) -> str:
    """``1 h 05 min``, ``3 min 07 s``, ``12 s`` (compact: ``1h05m00s``); ``—`` if unknown."""
    if not math.isfinite(seconds):
        return "?" if compact else "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if compact:
        return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s" if m else f"{sec} s"


def si(value: float, unit: str, digits: int = 3) -> str:
    """A value to ``digits`` significant digits with an SI prefix and its unit,
    e.g. ``1.23 pA``, ``450 MOhm`` (matplotlib's EngFormatter, imported when
    first needed); ``—`` if unknown."""
    if not math.isfinite(value):
        return "—" if math.isnan(value) else f"{value} {unit}"
    from matplotlib.ticker import EngFormatter

    value = float(f"{value:.{digits}g}")
    text = EngFormatter(unit=unit, usetex=False, useMathText=False)(value)
    return text.replace("\u2212", "-")  # a plain minus: terminals, logs, files
