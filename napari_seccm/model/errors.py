"""Errors shared across the layers."""

from __future__ import annotations


class InstrumentError(RuntimeError):
    """The instrument failed or cannot be reached: a controller's error, no
    answer, a lost link. Raised by the device layer (through the core, as the
    device raised it); a scan that meets one ends ``fault`` (a fault of the
    rig, not of the software), its measured points kept."""
