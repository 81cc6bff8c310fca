"""What every layer shares and nothing else: the measurement :class:`Program`
(hold and ramp segments, one way to sample them) and the :class:`ProbeSpec`
(Z stage, potentiostat, :class:`PipetteGeometry`).

No Micro-Manager, no Qt, no zarr. The program is plain Python (numpy inside
its sampling functions), so the simulator can use it without pydantic; the
probe's models are pydantic and load on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

from .program import Hold, Program, Ramp, Segment

#: public name -> submodule, imported on first use
_LAZY = {"PipetteGeometry": "probe", "ProbeSpec": "probe"}

__all__ = ["Hold", "PipetteGeometry", "ProbeSpec", "Program", "Ramp", "Segment"]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
