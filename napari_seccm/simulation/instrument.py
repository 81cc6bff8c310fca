"""The simulated probe: pipette, virtual clock and current amplifier."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from . import physics

PIPETTE_OK = "ok"
PIPETTE_CLOGGED = "clogged"
PIPETTE_BROKEN = "broken"
PIPETTE_STATES = (PIPETTE_OK, PIPETTE_CLOGGED, PIPETTE_BROKEN)

#: full-scale current ranges of the amplifier, A; the feedback resistor of a
#: range is 10 V / full scale (10 nA -> 1 GOhm)
CURRENT_RANGES_A = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6)
FULL_SCALE_V = 10.0


@dataclass
class PipetteParameters:
    """A single-barrel nanopipette; each field name carries its unit."""

    tip_radius_nm: float = 50.0
    half_angle_deg: float = 5.0
    #: 1 M LiClO4 in EC:DEC:EMC, ~1e-2 S/cm
    electrolyte_S_per_cm: float = 1e-2
    #: droplet footprint radius (>= tip radius, set by wetting)
    footprint_radius_nm: float = 75.0
    #: the meniscus reaches the surface when the tip is this far above it
    meniscus_height_um: float = 0.1
    #: on retract the meniscus detaches this far above the surface (> meniscus)
    detach_height_um: float = 0.3
    #: driving the tip this far into the surface breaks it
    crash_depth_um: float = 0.05
    #: a broken tip is this many times larger
    broken_scale: float = 5.0
    #: a clogged tip's resistance is this many times larger
    clogged_factor: float = 1e4

    def effective(self, state: str) -> tuple[float, float]:
        """(tip radius, footprint radius) in m for a pipette state."""
        scale = self.broken_scale if state == PIPETTE_BROKEN else 1.0
        return self.tip_radius_nm * 1e-9 * scale, self.footprint_radius_nm * 1e-9 * scale

    def resistance(self, state: str) -> float:
        r_tip, _ = self.effective(state)
        r = physics.pipette_resistance(
            r_tip, self.half_angle_deg, self.electrolyte_S_per_cm * 100.0
        )
        return r * (self.clogged_factor if state == PIPETTE_CLOGGED else 1.0)


class VirtualClock:
    """Simulated instrument time.

    Every move and acquisition advances ``now`` by its physical duration. With
    ``time_scale = 0`` nothing waits (a scan runs as fast as the computer
    allows but reports its true instrument time); ``1`` paces the simulation
    at real time (for live demos); ``0.1`` runs ten times faster than real.
    """

    def __init__(self, time_scale: float = 0.0) -> None:
        self.now = 0.0
        self.time_scale = time_scale
        self._lock = threading.Lock()
        self._wall_ref: float | None = None
        self._sim_ref = 0.0

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ValueError(f"time step must be >= 0 s, got {dt}")
        with self._lock:
            self.now += dt
            if self.time_scale <= 0:
                self._wall_ref = None
                return
            if self._wall_ref is None:
                self._wall_ref, self._sim_ref = time.perf_counter(), self.now - dt
            target = self._wall_ref + (self.now - self._sim_ref) * self.time_scale
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


class Amplifier:
    """A transimpedance current amplifier with a one-pole filter and an ADC.

    Noise is the feedback resistor's Johnson noise (white, ``4kT/R_f`` A^2/Hz)
    shaped by the same one-pole filter as the signal, so its rms is
    ``sqrt(4 k T ENBW / R_f)``; outputs clip at the range's full scale and are
    quantized by a 16-bit converter over +-full scale.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.range_A = 1e-8
        self.filter_hz = 1000.0
        self.sample_rate_hz = 5000.0
        self.temperature_k = 295.0
        self.mains_A = 0.0
        self.mains_hz = 50.0
        self.bits = 16
        self._state = 0.0  # filter memory, A

    @property
    def feedback_ohm(self) -> float:
        return FULL_SCALE_V / self.range_A

    @property
    def enbw_hz(self) -> float:
        return physics.one_pole_enbw(self.filter_hz, self.sample_rate_hz)

    @property
    def noise_rms_A(self) -> float:
        return physics.thermal_noise_rms(self.feedback_ohm, self.enbw_hz, self.temperature_k)

    def relax(self, dt: float) -> None:
        """Let the filter's memory decay over ``dt`` s with no input."""
        self._state *= math.exp(-2 * math.pi * self.filter_hz * dt)

    def measure(self, current: np.ndarray, t0: float) -> tuple[np.ndarray, np.ndarray]:
        """Return (measured current, saturated flags) for the true current."""
        from scipy.signal import lfilter

        fs = self.sample_rate_hz
        n = current.shape[0]
        white_sd = math.sqrt(4 * physics.K_B * self.temperature_k / self.feedback_ohm * fs / 2)
        x = current + self.rng.normal(0.0, white_sd, n)
        if self.mains_A:
            t = t0 + np.arange(n) / fs
            x = x + self.mains_A * np.sin(2 * np.pi * self.mains_hz * t)
        a = math.exp(-2 * math.pi * self.filter_hz / fs)
        y, _ = lfilter([1 - a], [1, -a], x, zi=[a * self._state])
        self._state = float(y[-1]) if n else self._state
        fs_a = self.range_A
        saturated = np.abs(y) >= fs_a
        lsb = 2 * fs_a / 2**self.bits
        y = np.clip(np.round(y / lsb) * lsb, -fs_a, fs_a)
        return y, saturated
