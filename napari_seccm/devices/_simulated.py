"""The simulated backend: every device talks to one shared :class:`SimulatedRig`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .backends import register_backend
from ..simulation import SimulatedRig, Waveform, optics

if TYPE_CHECKING:
    import numpy as np

_RIGS: dict[str, SimulatedRig] = {}
_LOCK = threading.Lock()


def get_rig(name: str = "default") -> SimulatedRig:
    """The rig called ``name``, created with default parameters if needed."""
    with _LOCK:
        if name not in _RIGS:
            _RIGS[name] = SimulatedRig()
        return _RIGS[name]


def new_rig(name: str = "default", **kwargs: Any) -> SimulatedRig:
    """Replace the rig called ``name`` with a fresh one (a new experiment)."""
    with _LOCK:
        _RIGS[name] = SimulatedRig(**kwargs)
        return _RIGS[name]


class SimulatedBackend:
    """Implements every backend protocol on the shared rig (looked up per call,
    so devices initialized before the ``Sample`` device see its fresh rig)."""

    def __init__(self, rig_name: str = "default", probe: str = "A") -> None:
        self.rig_name = rig_name
        self.probe_name = probe

    @property
    def rig(self) -> SimulatedRig:
        rig = _RIGS.get(self.rig_name)  # lock-free fast path; see get_rig
        return rig if rig is not None else get_rig(self.rig_name)

    @property
    def probe(self):
        return self.rig.probe(self.probe_name)

    # XY
    def get_xy_um(self) -> tuple[float, float]:
        rig = self.rig
        return rig.x_um, rig.y_um

    def move_xy_um(self, x: float, y: float, speed_um_s: float) -> None:
        rig = self.rig
        rig.xy_speed_um_s = speed_um_s
        rig.move_xy(x, y)

    # Z
    def get_z_um(self) -> float:
        return self.probe.z_um

    def move_z_um(self, z: float, speed_um_s: float) -> None:
        self.rig.move_z(z, self.probe_name, speed_um_s)

    def approach(
        self,
        stop_z_um: float,
        speed_um_s: float,
        threshold_A: float,
        mode: str,
        confirm_samples: int,
    ) -> dict[str, Any]:
        r = self.rig.approach(
            stop_z_um, speed_um_s, threshold_A, mode, confirm_samples, probe_name=self.probe_name
        )
        return {
            "contact": r.contact,
            "contact_z_um": r.contact_z_um,
            "final_z_um": r.final_z_um,
            "duration_s": r.duration_s,
            "reason": r.reason,
            "trace": r.trace,
        }

    # potentiostat
    def set_cell(self, on: bool) -> None:
        with self.rig.lock:
            self.probe.cell_on = bool(on)

    def set_potential(self, volts: float) -> None:
        self.rig.set_potential(volts, self.probe_name)

    def read_current(self) -> float:
        return self.rig.read_current(self.probe_name)

    def configure(self, *, range_A: float, filter_hz: float, sample_rate_hz: float) -> None:
        self.rig._check_failure("potentiostat")  # an injected fault refuses settings too
        amp = self.probe.amplifier
        amp.range_A, amp.filter_hz, amp.sample_rate_hz = range_A, filter_hz, sample_rate_hz

    def run_waveform(self, waveform_json: str) -> np.ndarray:
        return self.rig.acquire(Waveform.from_json(waveform_json), self.probe_name)

    # camera
    def snap(self, shape: tuple[int, int], pixel_um: float, exposure_ms: float) -> np.ndarray:
        rig = self.rig
        with rig.lock:
            img = optics.render(
                rig.film,
                rig.x_um,
                rig.y_um,
                shape,
                pixel_um,
                rig.residues,
                self.probe.z_um - rig.surface_um(),
                rig.rng,
                exposure_ms,
            )
            rig._advance(exposure_ms * 1e-3)
            return img


register_backend("simulated", SimulatedBackend)
