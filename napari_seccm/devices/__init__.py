"""Micro-Manager device adapters of the SECCM, as pymmcore-plus UniMMCore Python devices.

Each controller is a hub with its peripherals (``SimulatedSECCM`` here; real
controllers in their own modules). In a config file::

    #py pyDevice,SECCM,napari_seccm.devices,SimulatedSECCM
    #py pyDevice,PiezoZ,napari_seccm.devices,PiezoZ
    #py Parent,PiezoZ,SECCM

The contract every device meets (start / busy / stop, deadlines, interlocks,
the latched emergency stop, events) is in ``docs/devices.md``.
"""

from ._hub import EmergencyStopLatched, InterlockError, SECCMHub
from .camera import OpticalCamera
from .pi import PIHub
from .potentiostat import Potentiostat
from .simulated import SimulatedSECCM
from .stages import PiezoXY, PiezoZ

__all__ = [
    "EmergencyStopLatched",
    "InterlockError",
    "OpticalCamera",
    "PIHub",
    "PiezoXY",
    "PiezoZ",
    "Potentiostat",
    "SECCMHub",
    "SimulatedSECCM",
]
