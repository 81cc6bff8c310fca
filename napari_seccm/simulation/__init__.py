"""A physics simulator of an SECCM and an LLTO thin film (numpy/scipy only).

Imports nothing else of the package but :mod:`napari_seccm.model` (the
measurement :class:`~napari_seccm.model.Program` it runs), and nothing of
Micro-Manager.
"""

from ..model.program import Program
from .instrument import (
    CURRENT_RANGES_A,
    PIPETTE_STATES,
    Amplifier,
    DriftParameters,
    FlickerNoise,
    PipetteParameters,
    VirtualClock,
)
from .rig import DETECT_MODES, ApproachResult, SimulatedRig
from .sample import DOMAIN_001, DOMAIN_100, FilmParameters, LLTOFilm

__all__ = [
    "CURRENT_RANGES_A",
    "DETECT_MODES",
    "DOMAIN_001",
    "DOMAIN_100",
    "PIPETTE_STATES",
    "Amplifier",
    "ApproachResult",
    "DriftParameters",
    "FilmParameters",
    "FlickerNoise",
    "LLTOFilm",
    "PipetteParameters",
    "SimulatedRig",
    "VirtualClock",
    "Waveform",
]

#: the potential program's former name here: the devices parse the potentiostat's
#: ``Waveform`` property with ``Waveform.from_json`` (same JSON, same sampling)
Waveform = Program
