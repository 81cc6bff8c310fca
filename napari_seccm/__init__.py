"""napari-seccm: Scanning Electrochemical Cell Microscopy with napari and Micro-Manager."""

from __future__ import annotations

__version__ = "0.1.0"
