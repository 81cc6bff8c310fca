"""A physics simulator of an SECCM and an LLTO thin film (numpy/scipy only).

Imports nothing else of the package, and nothing of Micro-Manager.
"""

from .instrument import (
    CURRENT_RANGES_A,
    PIPETTE_STATES,
    Amplifier,
    PipetteParameters,
    VirtualClock,
)
from .rig import DETECT_MODES, ApproachResult, SimulatedRig, Waveform
from .sample import DOMAIN_001, DOMAIN_100, FilmParameters, LLTOFilm

__all__ = [
    "CURRENT_RANGES_A",
    "DETECT_MODES",
    "DOMAIN_001",
    "DOMAIN_100",
    "PIPETTE_STATES",
    "Amplifier",
    "ApproachResult",
    "FilmParameters",
    "LLTOFilm",
    "PipetteParameters",
    "SimulatedRig",
    "VirtualClock",
    "Waveform",
]
