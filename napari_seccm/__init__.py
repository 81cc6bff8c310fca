"""napari-seccm: Scanning Electrochemical Cell Microscopy with napari and Micro-Manager."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "emergency_stop", "reset_emergency_stop"]


def __getattr__(name: str) -> Any:
    # the emergency stop is importable from the top, without importing the
    # acquisition package (and pymmcore-plus) at `import napari_seccm`
    if name in ("emergency_stop", "reset_emergency_stop"):
        from .acquisition import control

        return getattr(control, name)
    raise AttributeError(f"module 'napari_seccm' has no attribute {name!r}")
