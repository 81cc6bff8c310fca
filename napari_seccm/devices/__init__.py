"""Micro-Manager device adapters of the SECCM, as pymmcore-plus UniMMCore Python devices.

Load them from a config file (``#py pyDevice,PiezoXY,napari_seccm.devices,PiezoXY``)
or with ``core.loadDevice("PiezoXY", "napari_seccm.devices", "PiezoXY")``.
"""

from . import _simulated  # registers the "simulated" backend
from .backends import backend_names, register_backend
from .camera import OpticalCamera
from .potentiostat import Potentiostat
from .sample import Sample
from .stages import PiezoXY, PiezoZ

__all__ = [
    "OpticalCamera",
    "PiezoXY",
    "PiezoZ",
    "Potentiostat",
    "Sample",
    "backend_names",
    "register_backend",
]

del _simulated
