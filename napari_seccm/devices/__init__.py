"""Micro-Manager device adapters of the SECCM, as pymmcore-plus UniMMCore Python devices.

Each controller is a hub with its peripherals: ``SimulatedSECCM``, and the real
controllers ``PIHub`` (PI piezo controllers), ``NIDAQHub`` (an NI-DAQ board and a
current amplifier), ``PalmSensHub`` (an EmStat over MethodSCRIPT), whose vendor
packages are imported only when such a hub initializes. In a config file::

    #py pyDevice,SECCM,napari_seccm.devices,SimulatedSECCM
    #py pyDevice,PiezoZ,napari_seccm.devices,PiezoZ
    #py Parent,PiezoZ,SECCM

The contract every device meets (start / busy / stop, deadlines, interlocks,
the latched emergency stop, events) is in ``docs/devices.md``.
"""

from ._hub import EmergencyStopLatched, InterlockError, SECCMHub
from .camera import OpticalCamera
from .nidaq import NIDAQHub
from .palmsens import PalmSensHub
from .pi import PIHub
from .potentiostat import Potentiostat
from .simulated import SimulatedSECCM
from .stages import PiezoXY, PiezoZ

__all__ = [
    "EmergencyStopLatched",
    "InterlockError",
    "NIDAQHub",
    "OpticalCamera",
    "PIHub",
    "PalmSensHub",
    "PiezoXY",
    "PiezoZ",
    "Potentiostat",
    "SECCMHub",
    "SimulatedSECCM",
]
