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
