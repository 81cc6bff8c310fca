"""What a device class needs from the hardware behind it.

Each Micro-Manager device in this package (``PiezoXY``, ``PiezoZ``,
``Potentiostat``, ``OpticalCamera``) delegates to a backend. The default backend
is the simulated rig (:mod:`napari_seccm.simulation`); a real
instrument plugs in behind the same device classes by implementing these
protocols (for example PI GCS piezo controllers via ``pipython``, an NI-DAQ
potentiostat via ``nidaqmx``, a PalmSens via ``pypalmsens``) and registering
itself with :func:`register_backend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np


@runtime_checkable
class XYBackend(Protocol):
    def get_xy_um(self) -> tuple[float, float]: ...
    def move_xy_um(self, x: float, y: float, speed_um_s: float) -> None: ...


@runtime_checkable
class ZBackend(Protocol):
    def get_z_um(self) -> float: ...
    def move_z_um(self, z: float, speed_um_s: float) -> None: ...
    def approach(
        self,
        stop_z_um: float,
        speed_um_s: float,
        threshold_A: float,
        mode: str,
        confirm_samples: int,
    ) -> dict[str, Any]:
        """Lower Z until the current shows contact; see ``PiezoZ``."""


@runtime_checkable
class PotentiostatBackend(Protocol):
    def set_cell(self, on: bool) -> None: ...
    def set_potential(self, volts: float) -> None: ...
    def read_current(self) -> float: ...
    def configure(self, *, range_A: float, filter_hz: float, sample_rate_hz: float) -> None: ...
    def run_waveform(self, waveform_json: str) -> np.ndarray:
        """Apply the waveform hardware-timed; return rows [t_s, E_V, I_A]."""


@runtime_checkable
class CameraBackend(Protocol):
    def snap(self, shape: tuple[int, int], pixel_um: float, exposure_ms: float) -> np.ndarray: ...


_BACKENDS: dict[str, Callable[[str], Any]] = {}


def register_backend(name: str, factory: Callable[[str], Any]) -> None:
    """Make a backend selectable with a device's ``Backend`` pre-init property.

    ``factory(rig_name)`` returns an object implementing the protocols above
    (one object may serve several devices, as the simulated rig does).
    """
    _BACKENDS[name] = factory


def get_backend(name: str, rig: str) -> Any:
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(_BACKENDS)}")
    return _BACKENDS[name](rig)


def backend_names() -> list[str]:
    return sorted(_BACKENDS)
