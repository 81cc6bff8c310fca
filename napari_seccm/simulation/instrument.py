"""The simulated probe: pipette, virtual clock and current amplifier."""

from __future__ import annotations

import functools
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
    # ---- landing-to-landing realism (each 0 = the idealized droplet) ----
    #: sigma of ln(footprint radius) from one landing to the next (log-normal,
    #: median = ``footprint_radius_nm``). Hopping-mode SECCM papers that image
    #: the droplet residues (SEM/AFM, Unwin group and others) quote footprints
    #: as "d +- s" with s/d of roughly 5-10 %; 6 % is the middle of that range
    footprint_scatter: float = 0.06
    #: chance that a landing wets only part of the usual footprint
    partial_wetting_probability: float = 0.02
    #: a partly wetted footprint's radius is the usual one times a factor drawn
    #: uniformly in [this, 1)
    partial_wetting_min_factor: float = 0.5
    #: chance that the meniscus does not wet at its usual height and lands late:
    #: at a tip height drawn uniformly in [0, meniscus height) (at worst when the
    #: glass touches); the contact height then reads up to a meniscus height low
    late_landing_probability: float = 0.02
    #: chance that an approach makes no meniscus contact at all (a tip whose
    #: liquid has retreated): the current stays at zero to the approach's stop
    #: height (which breaks the tip if that is deeper than ``crash_depth_um``);
    #: 0 by default, as such a miss costs the pipette
    miss_probability: float = 0.0
    #: a landing on old droplet residue (redissolving salt crust) wets wider:
    #: footprint radius x (1 + this x the fraction of the footprint on residue)
    residue_wetting_gain: float = 0.1
    #: slow evaporation of the volatile carbonates (DEC, EMC) at the tip
    #: concentrates the 1 M LiClO4 past its conductivity maximum: the pipette's
    #: resistance rises by this fraction per hour of the pipette's life
    evaporation_per_h: float = 0.03

    def effective(self, state: str) -> tuple[float, float]:
        """(tip radius, footprint radius) in m for a pipette state."""
        scale = self.broken_scale if state == PIPETTE_BROKEN else 1.0
        return self.tip_radius_nm * 1e-9 * scale, self.footprint_radius_nm * 1e-9 * scale

    def resistance(self, state: str, evaporated: float = 0.0) -> float:
        """Pipette resistance, Ohm; ``evaporated``: the fractional rise so far
        from evaporation (see ``evaporation_per_h``)."""
        r_tip, _ = self.effective(state)
        r = physics.pipette_resistance(
            r_tip, self.half_angle_deg, self.electrolyte_S_per_cm * 100.0
        )
        return r * (self.clogged_factor if state == PIPETTE_CLOGGED else 1.0) * (1.0 + evaporated)


@dataclass
class DriftParameters:
    """Slow thermal drift of the sample against the stage frame; each field
    name carries its unit (0 everywhere = no drift).

    A closed-loop piezo stage and its sample mount drift by tens of nm per
    hour once thermally settled (more in the first hour after the glovebox is
    opened or the lamp switched on); the defaults are in that range.
    """

    #: the sample moves this far along +x per hour (what lies under stage
    #: position x was at x - drift)
    x_nm_per_h: float = 20.0
    y_nm_per_h: float = -10.0
    #: the surface height rises this much per hour
    z_nm_per_h: float = 30.0


class FlickerNoise:
    """1/f (flicker) fluctuation of the cell's ionic conductance, relative.

    Nanopipettes show Hooge-type 1/f noise: the ionic current fluctuates in
    proportion to itself. Modelled as a sum of Ornstein-Uhlenbeck processes of
    equal variance, one per decade of corner frequency (1 mHz to 10 Hz), whose
    sum has a 1/f spectrum over that band (above it the amplifier's white noise
    dominates). The processes run continuously in instrument time (exact
    updates over any gap), so that landings minutes apart see correlated,
    slowly wandering conductance, as on a real pipette. Evaluated on a coarse
    grid (20 ms: 25 Hz Nyquist, above the top corner) and interpolated: ~10 us
    per measurement.
    """

    CORNERS_HZ = 10.0 ** np.arange(-3, 2)
    GRID_S = 0.02

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._lam = 2.0 * np.pi * self.CORNERS_HZ
        self._x = rng.standard_normal(self._lam.size)  # unit-variance state
        self._t = 0.0

    def sample(self, t0: float, n: int, dt: float, rms: float) -> np.ndarray:
        """Relative fluctuation (rms ``rms``) at the ``n`` sample times from ``t0``."""
        span = max(n - 1, 0) * dt
        m = max(2, int(math.ceil(span / self.GRID_S)) + 1)
        h = span / (m - 1)
        k = self._lam.size
        # step 0 brings the state from the last call to t0, then m - 1 steps of h
        steps = np.full(m, h)
        steps[0] = max(t0 - self._t, 0.0)
        phi = np.exp(-np.multiply.outer(steps, self._lam))
        c = np.sqrt(1.0 - phi**2)
        z = self.rng.standard_normal((m, k))
        grid = np.empty((m, k))
        if m <= 16:
            x = self._x
            for i in range(m):
                x = phi[i] * x + c[i] * z[i]
                grid[i] = x
        else:
            from scipy.signal import lfilter

            first = phi[0] * self._x + c[0] * z[0]
            grid[0] = first
            for j in range(k):
                grid[1:, j], _ = lfilter(
                    [c[1, j]], [1.0, -phi[1, j]], z[1:, j], zi=[phi[1, j] * first[j]]
                )
        self._x = grid[-1].copy()
        self._t = t0 + span
        total = grid.sum(axis=1) * (rms / math.sqrt(k))
        if span == 0:
            return np.full(n, total[0])
        return np.interp(np.arange(n) * dt, np.arange(m) * h, total)


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


@functools.lru_cache(maxsize=8)
def _ramp(n: int) -> np.ndarray:
    """0, 1, ..., n - 1 as floats (read-only: shared)."""
    r = np.arange(n, dtype=float)
    r.flags.writeable = False
    return r


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
        #: 50 Hz pickup that gets through the Faraday cage in a glovebox (its
        #: circulation blower and lamp): ~1 pA is typical of a shielded
        #: femtoammeter set-up; it stays well below the 3 pA contact threshold
        self.mains_A = 1e-12
        self.mains_hz = 50.0
        #: the mains phase at instrument time 0 (random: the experiment starts
        #: at no particular point of the mains cycle)
        self.mains_phase = float(rng.uniform(0.0, 2 * np.pi))
        #: rms of the current's relative 1/f fluctuation in contact (0: none)
        self.flicker_rel = 0.01
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
        if self.mains_A and n:
            w = 2 * np.pi * self.mains_hz
            hum = _ramp(n) * (w / fs)
            hum += math.fmod(w * t0 + self.mains_phase, 2 * np.pi)
            np.sin(hum, out=hum)
            hum *= self.mains_A
            x += hum
        a = math.exp(-2 * math.pi * self.filter_hz / fs)
        y, _ = lfilter([1 - a], [1, -a], x, zi=[a * self._state])
        self._state = float(y[-1]) if n else self._state
        fs_a = self.range_A
        saturated = np.abs(y) >= fs_a
        lsb = 2 * fs_a / 2**self.bits
        y = np.clip(np.round(y / lsb) * lsb, -fs_a, fs_a)
        return y, saturated
