"""One simulated SECCM instrument, shared by all the simulated devices.

The rig owns the sample (film), one or more probes (pipette + Z + amplifier
channel), the XY position and the virtual clock. Probes are keyed by name so
that a second pipette with its own potentiostat channel and Z can join for the
dual-probe measurement; today every device uses probe ``"A"``.
"""

from __future__ import annotations

import collections
import functools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model.detect import DETECT_MODES, ContactWatch
from ..model.program import Hold, Program
from . import physics
from .instrument import (
    PIPETTE_BROKEN,
    PIPETTE_OK,
    Amplifier,
    DriftParameters,
    FlickerNoise,
    PipetteParameters,
    VirtualClock,
)
from .sample import FilmParameters, LLTOFilm


@dataclass
class Landing:
    """How the next droplet will land (drawn once per landing, before it)."""

    #: the meniscus touches when the tip is this far above the surface, um
    #: (-inf: it does not touch on this approach)
    gap_um: float
    #: footprint radius / the pipette's nominal footprint radius
    radius_factor: float
    partial: bool = False
    late: bool = False
    miss: bool = False


@dataclass
class Contact:
    """A droplet on the surface."""

    x_um: float
    y_um: float
    t_s: float
    #: the film's series resistance for this landing, Ohm
    resistance_ohm: float
    #: this droplet's footprint radius, m
    footprint_m: float = math.nan
    landing: Landing | None = None


class ResidueSpots:
    """Residue spots (x, y, radius) um, in the film's frame, most recent last.

    A bounded deque (a million-point scan keeps flat memory; the optical image
    shows the most recent) with a grid index, so that a landing can ask which
    old spots lie under its footprint in microseconds.
    """

    CELL_UM = 0.5

    def __init__(self, maxlen: int = 20_000) -> None:
        self._spots: collections.deque[tuple[float, float, float]] = collections.deque()
        self.maxlen = maxlen
        self._grid: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
        self._r_max = 0.0

    def _key(self, x: float, y: float) -> tuple[int, int]:
        return (math.floor(x / self.CELL_UM), math.floor(y / self.CELL_UM))

    def append(self, spot: tuple[float, float, float]) -> None:
        if len(self._spots) >= self.maxlen:
            old = self._spots.popleft()
            cell = self._grid[self._key(old[0], old[1])]
            cell.remove(old)
        self._spots.append(spot)
        self._grid.setdefault(self._key(spot[0], spot[1]), []).append(spot)
        self._r_max = max(self._r_max, spot[2])

    def __len__(self) -> int:
        return len(self._spots)

    def __iter__(self):
        return iter(self._spots)

    def __getitem__(self, i: int) -> tuple[float, float, float]:
        return self._spots[i]

    def clear(self) -> None:
        self._spots.clear()
        self._grid.clear()
        self._r_max = 0.0

    def covered_fraction(self, x: float, y: float, r: float) -> float:
        """Largest fraction of the disk (x, y, r) that one old spot covers."""
        if not self._spots:
            return 0.0
        reach = r + self._r_max
        c = self.CELL_UM
        grid = self._grid
        # plain Python: the cells within reach hold a handful of spots, mostly clear
        best = 0.0
        for i in range(math.floor((x - reach) / c), math.floor((x + reach) / c) + 1):
            for j in range(math.floor((y - reach) / c), math.floor((y + reach) / c) + 1):
                for sx, sy, sr in grid.get((i, j), ()):
                    if (sx - x) ** 2 + (sy - y) ** 2 < (r + sr) ** 2:
                        best = max(best, _lens_area(math.hypot(sx - x, sy - y), r, sr))
        return best / (math.pi * r * r)


def _lens_area(d: float, r1: float, r2: float) -> float:
    """Area of the intersection of disks of radii r1, r2 whose centres are d apart."""
    if d <= abs(r1 - r2):
        return math.pi * min(r1, r2) ** 2
    if d >= r1 + r2:
        return 0.0
    c1 = min(max((d * d + r1 * r1 - r2 * r2) / (2 * d * r1), -1.0), 1.0)
    c2 = min(max((d * d + r2 * r2 - r1 * r1) / (2 * d * r2), -1.0), 1.0)
    k = (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)
    return r1 * r1 * math.acos(c1) + r2 * r2 * math.acos(c2) - 0.5 * math.sqrt(max(k, 0.0))


@dataclass
class ApproachResult:
    contact: bool
    #: Z where the current first crossed the threshold (the contact height), um
    contact_z_um: float
    #: Z where the stage stopped, um
    final_z_um: float
    duration_s: float
    reason: str
    trace: np.ndarray = field(repr=False, default_factory=lambda: np.empty((3, 0)))


@dataclass
class Probe:
    """A pipette on its own Z axis with its own potentiostat channel."""

    rng: np.random.Generator
    pipette: PipetteParameters = field(default_factory=PipetteParameters)
    state: str = PIPETTE_OK
    z_um: float = 50.0
    potential_V: float = 0.0
    cell_on: bool = False
    contact: Contact | None = None
    #: fractional rise of the pipette resistance from evaporation so far
    evaporated: float = 0.0
    #: how the next droplet lands (drawn when first needed)
    next_landing: Landing | None = None
    #: the generator of the 1/f process (default: ``rng``)
    flicker_rng: np.random.Generator | None = None
    amplifier: Amplifier = field(init=False)
    flicker: FlickerNoise = field(init=False)

    def __post_init__(self) -> None:
        self.amplifier = Amplifier(self.rng)
        self.flicker = FlickerNoise(self.flicker_rng or self.rng)

    def new_pipette(self) -> None:
        """A freshly filled pipette: no evaporation yet."""
        self.evaporated = 0.0
        self.next_landing = None


def timed_on(rig_of: Any) -> Any:
    """Decorator factory: accumulate the wall time of a call in the rig's
    ``compute_s`` (``rig_of(self)`` gives the rig), so benchmarks can tell the
    simulated instrument's cost from the software's; nested calls count once."""

    def decorate(method: Any) -> Any:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            rig = rig_of(self)
            if rig._timing:  # nested call: the outer one counts
                return method(self, *args, **kwargs)
            rig._timing = True
            t0 = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                rig.compute_s += time.perf_counter() - t0
                rig._timing = False

        return wrapper

    return decorate


#: the rig's own methods
_timed = timed_on(lambda rig: rig)


class SimulatedRig:
    """The instrument: stage, probes, film and clock, with thread-safe access."""

    def __init__(
        self,
        film: FilmParameters | None = None,
        seed: int = 0,
        time_scale: float = 0.0,
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        #: landings draw from their own stream: the n-th landing of an
        #: experiment is the same whatever was measured between landings
        self.landing_rng = np.random.default_rng([seed, 1])
        self.clock = VirtualClock(time_scale)
        self.film = LLTOFilm(film or FilmParameters())
        self.x_um = 0.0
        self.y_um = 0.0
        self.xy_speed_um_s = 50.0
        self.z_speed_um_s = 20.0
        #: potential across the blocking Au back contact, V
        self.backcontact_V = 0.0
        #: thermal drift rates, and how far the sample has drifted (x, y, z) um
        self.drift = DriftParameters()
        self.drift_um = np.zeros(3)
        #: positions where droplets have been (x, y, radius) um, film frame:
        #: the most recent droplet residues (older ones fade from the optical
        #: image; bounded so a million-point scan keeps flat memory)
        self.residues = ResidueSpots(maxlen=20_000)
        self.probes: dict[str, Probe] = {
            "A": Probe(self.rng, flicker_rng=np.random.default_rng([seed, 2]))
        }
        self.failure: str = ""  # a fault to inject: "xy", "z", "potentiostat"
        self._surface_cache: tuple[Any, Any, float] = (None, None, 0.0)
        #: wall time spent computing the simulation, s (see ``_timed``)
        self.compute_s = 0.0
        self._timing = False

    # ---------------------------------------------------------------- helpers
    def probe(self, name: str = "A") -> Probe:
        return self.probes[name]

    def set_film(self, params: FilmParameters | LLTOFilm) -> None:
        with self.lock:
            self.film = params if isinstance(params, LLTOFilm) else LLTOFilm(params)
            for p in self.probes.values():
                if p.contact is not None:
                    p.contact.resistance_ohm = self.series_resistance(
                        p.contact.x_um, p.contact.y_um, p, p.contact.footprint_m
                    )

    def _check_failure(self, what: str) -> None:
        if self.failure == what:
            raise RuntimeError(f"simulated {what} failure (injected)")

    def _advance(self, dt: float, measured: bool = False) -> None:
        """Advance the clock; the back contact relaxes meanwhile.

        ``measured``: the amplifier was sampled over this interval, so its
        filter memory is already up to date.
        """
        if dt <= 0:
            return
        fp = self.film.params
        tau = fp.pad_capacitance_F * fp.pad_leak_ohm
        if self.backcontact_V and not any(p.contact for p in self.probes.values()):
            self.backcontact_V *= math.exp(-dt / tau)
        h = dt / 3600.0
        d = self.drift
        if d.x_nm_per_h or d.y_nm_per_h or d.z_nm_per_h:
            self.drift_um += (
                d.x_nm_per_h * 1e-3 * h,
                d.y_nm_per_h * 1e-3 * h,
                d.z_nm_per_h * 1e-3 * h,
            )
        for p in self.probes.values():
            if not measured:
                p.amplifier.relax(dt)
            p.evaporated += p.pipette.evaporation_per_h * h
        self.clock.advance(dt)

    def idle(self, dt: float) -> None:
        """Let ``dt`` s of instrument time pass with nothing moving (drift,
        evaporation and the back contact's relaxation go on)."""
        with self.lock:
            self._advance(dt)

    def film_xy(self, x: float, y: float) -> tuple[float, float]:
        """The point of the film under stage position (x, y), um (lateral drift)."""
        return x - float(self.drift_um[0]), y - float(self.drift_um[1])

    def surface_um(self, x: float | None = None, y: float | None = None) -> float:
        """Height of the surface at (x, y), um (default: under the pipette),
        drift included."""
        x = self.x_um if x is None else x
        y = self.y_um if y is None else y
        # the lateral drift in whole nm: within a landing the film point under
        # the tip moves far less, and its height (tilt x drift) by far less
        # than a picometre; so one landing's many calls share one evaluation
        qx, qy = round(float(self.drift_um[0]) * 1e3), round(float(self.drift_um[1]) * 1e3)
        # the film itself, not its id(), in the key: a new film (another
        # FilmSeed) may be given the id of the one it replaced
        key, (cached_key, cached_film, h) = (x, y, qx, qy), self._surface_cache
        if cached_film is not self.film or cached_key != key:
            h = float(self.film.surface_height_um(x - qx * 1e-3, y - qy * 1e-3))
            self._surface_cache = (key, self.film, h)
        return h + float(self.drift_um[2])

    # ---------------------------------------------------------------- physics
    def series_resistance(
        self, x_um: float, y_um: float, probe: Probe, footprint_m: float | None = None
    ) -> float:
        """R_total of a landing at stage (x, y), Ohm (pipette + interface +
        spreading + film); ``footprint_m``: this droplet's footprint radius
        (default: the pipette's nominal one)."""
        return sum(self.resistance_terms(x_um, y_um, probe, footprint_m).values())

    def resistance_terms(
        self,
        x_um: float,
        y_um: float,
        probe: str | Probe = "A",
        footprint_m: float | None = None,
    ) -> dict:
        """The series terms of a landing at stage (x, y), Ohm, for display and tests.

        The spreading term includes grain boundaries in the spreading volume,
        the film term those between the contact and the pad; the pipette term
        its evaporation so far.
        """
        if isinstance(probe, str):
            probe = self.probes[probe]
        film = self.film
        fp = film.params
        a = footprint_m
        if a is None or not math.isfinite(a):
            _, a = probe.pipette.effective(probe.state)
        fx, fy = self.film_xy(x_um, y_um)
        r_sp = 1.0 / float(film.spreading_conductance(fx, fy, a * 1e6))
        r_film = float(
            physics.film_resistance(
                film.pad_distance_um(fx) * 1e-6,
                a,
                fp.sigma_film_S_per_cm * 100.0,
                fp.thickness_nm * 1e-9,
            )
        )
        if film._grain_seeds is not None:
            r_sp *= film.gb_spreading_factor(fx, fy, a * 1e6)
            r_film += film.gb_film_resistance(fx, fy, a)
        return {
            "pipette_ohm": probe.pipette.resistance(probe.state, probe.evaporated),
            "interface_ohm": physics.interface_resistance(fp.asr_ohm_cm2 * 1e-4, a),
            "spreading_ohm": r_sp,
            "film_ohm": r_film,
        }

    @staticmethod
    def footprint_m(probe: Probe) -> float:
        """The footprint radius of the probe's droplet (nominal without one), m."""
        c = probe.contact
        if c is not None and math.isfinite(c.footprint_m):
            return c.footprint_m
        return probe.pipette.effective(probe.state)[1]

    def _cell_current(
        self, probe: Probe, potential: np.ndarray, dt: float, e_before: float, t0: float
    ) -> np.ndarray:
        """True (noise-free) current for potentials applied sample by sample, A.

        Ionic current through the series resistance with the blocking back
        contact charging in series (exact exponential update per sample), the
        double-layer charging current of potential steps, and the optional
        electronic leakage branch.
        """
        fp = self.film.params
        n = potential.shape[0]
        if not probe.cell_on or probe.contact is None or n == 0:
            return np.zeros(n)
        from scipy.signal import lfilter

        R = probe.contact.resistance_ohm
        C = fp.pad_capacitance_F
        Rl = fp.pad_leak_ohm
        e = potential - fp.rest_potential_V
        # back-contact voltage v: dv/dt = (e - v)/(R C) - v/(Rl C)
        k = 1.0 / (R * C) + 1.0 / (Rl * C)
        alpha = math.exp(-k * dt)
        v_inf = e * (Rl / (R + Rl))
        v, _ = lfilter([1 - alpha], [1, -alpha], v_inf, zi=[alpha * self.backcontact_V])
        v_start = np.concatenate(([self.backcontact_V], v[:-1]))
        self.backcontact_V = float(v[-1])
        i = (e - v_start) / R
        rel = probe.amplifier.flicker_rel
        if rel > 0:
            # 1/f fluctuation of the cell's conductance (Hooge: relative)
            i = i * (1.0 + probe.flicker.sample(t0, n, dt, rel))
        a = self.footprint_m(probe)
        cdl = fp.cdl_uF_per_cm2 * 1e-2 * math.pi * a**2  # F
        steps = np.diff(np.concatenate(([e_before], potential)))
        i = i + cdl * steps / dt
        if fp.leakage_enabled:
            below = potential < fp.leakage_onset_V
            i = i + np.where(
                below, (potential - fp.leakage_onset_V) / fp.leakage_resistance_ohm, 0.0
            )
        return i

    def _landing_charge(self, probe: Probe, x_um: float, y_um: float) -> float:
        fp = self.film.params
        a = self.footprint_m(probe)
        dv = (probe.potential_V - fp.rest_potential_V) if probe.cell_on else 0.0
        return physics.double_layer_charge(fp.cdl_uF_per_cm2 * 1e-2, a, dv)

    def _spike(self, probe: Probe, n: int, dt: float, t_land: float, q: float) -> np.ndarray:
        """Landing spike binned per sample (charge-conserving), A.

        ``t_land`` is the landing time from the start of the first sample; the
        spike decays with the cell's RC, ``tau = R_total * C_dl * pi a^2``.
        """
        if q == 0 or probe.contact is None:
            return np.zeros(n)
        fp = self.film.params
        a = self.footprint_m(probe)
        tau = probe.contact.resistance_ohm * fp.cdl_uF_per_cm2 * 1e-2 * math.pi * a**2
        edges = np.arange(n + 1) * dt - t_land
        frac = 1.0 - np.exp(-np.clip(edges, 0, None) / tau)
        return q * np.diff(frac) / dt

    # ----------------------------------------------------------------- motion
    @_timed
    def move_xy(self, x_um: float, y_um: float) -> float:
        """Move the stage; returns the move's duration, s."""
        with self.lock:
            self._check_failure("xy")
            dist = math.hypot(x_um - self.x_um, y_um - self.y_um)
            dt = dist / self.xy_speed_um_s
            self.x_um, self.y_um = float(x_um), float(y_um)
            for probe in self.probes.values():
                if probe.contact is not None:
                    # the meniscus is dragged along: a streak of residue
                    probe.contact = self._make_contact(probe, probe.contact)
            self._advance(dt)
            return dt

    def _next_landing(self, probe: Probe) -> Landing:
        """How the probe's next droplet lands: drawn once, before it lands."""
        if probe.next_landing is None:
            pip = probe.pipette
            rng = self.landing_rng
            u = rng.random(4)  # the same draws whatever is switched on
            factor = math.exp(pip.footprint_scatter * rng.standard_normal())
            partial = bool(u[0] < pip.partial_wetting_probability)
            if partial:
                lo = pip.partial_wetting_min_factor
                factor *= lo + (1.0 - lo) * u[1]
            miss = bool(u[2] < pip.miss_probability)
            late = not miss and bool(u[3] < pip.late_landing_probability)
            gap = pip.meniscus_height_um
            if miss:
                gap = -math.inf
            elif late:
                # u[3] < p is uniform on [0, p): its position there is the height
                gap = pip.meniscus_height_um * ((u[3] / pip.late_landing_probability) % 1.0)
            probe.next_landing = Landing(gap, factor, partial, late, miss)
        return probe.next_landing

    def _make_contact(self, probe: Probe, dragged: Contact | None = None) -> Contact:
        if dragged is not None:  # the same droplet, moved
            a, landing = dragged.footprint_m, dragged.landing
        else:
            landing = self._next_landing(probe)
            probe.next_landing = None
            a = probe.pipette.effective(probe.state)[1] * landing.radius_factor
        fx, fy = self.film_xy(self.x_um, self.y_um)
        gain = probe.pipette.residue_wetting_gain
        if dragged is None and gain:
            a *= 1.0 + gain * self.residues.covered_fraction(fx, fy, a * 1e6)
        self.residues.append((fx, fy, a * 1e6))
        return Contact(
            self.x_um,
            self.y_um,
            self.clock.now,
            self.series_resistance(self.x_um, self.y_um, probe, a),
            a,
            landing,
        )

    def _update_contact_state(self, probe: Probe) -> None:
        """Apply meniscus contact, detach hysteresis and crash at the probe's Z."""
        gap = probe.z_um - self.surface_um()
        pip = probe.pipette
        if gap < -pip.crash_depth_um and probe.state != PIPETTE_BROKEN:
            probe.state = PIPETTE_BROKEN
        if probe.contact is None and gap <= self._next_landing(probe).gap_um:
            probe.contact = self._make_contact(probe)
        elif probe.contact is not None and gap > pip.detach_height_um:
            probe.contact = None

    @_timed
    def move_z(self, z_um: float, probe_name: str = "A", speed_um_s: float | None = None) -> float:
        """Move a probe's Z; landing, detaching and crashing happen on the way."""
        with self.lock:
            self._check_failure("z")
            probe = self.probes[probe_name]
            speed = speed_um_s or self.z_speed_um_s
            dt = abs(z_um - probe.z_um) / speed
            probe.z_um = float(z_um)
            self._update_contact_state(probe)
            self._advance(dt)
            return dt

    @_timed
    def approach(
        self,
        stop_z_um: float,
        speed_um_s: float,
        threshold_A: float,
        mode: str = "absolute",
        confirm_samples: int = 3,
        baseline_samples: int = 50,
        probe_name: str = "A",
    ) -> ApproachResult:
        """Lower the probe at constant speed until the current shows contact.

        This is the instrument-side loop (an FPGA-style controller): the current
        is sampled at the amplifier's sample rate while Z moves; contact is the
        first sample at which the detector fires and stays fired for
        ``confirm_samples`` more samples; the stage then stops where it is
        (overshoot = speed x detection latency). Reaching ``stop_z_um`` first is
        a miss.
        """
        if mode not in DETECT_MODES:
            raise ValueError(f"detection mode must be one of {DETECT_MODES}, not {mode!r}")
        with self.lock:
            self._check_failure("z")
            probe = self.probes[probe_name]
            amp = probe.amplifier
            fs = amp.sample_rate_hz
            dt = 1.0 / fs
            z0 = probe.z_um
            if stop_z_um >= z0:
                raise ValueError(
                    f"approach stop Z {stop_z_um} um must be below the current Z {z0} um"
                )
            if probe.contact is not None:
                return ApproachResult(True, z0, z0, 0.0, "already in contact")
            z_contact = self.surface_um() + self._next_landing(probe).gap_um
            n_total = int(math.ceil((z0 - stop_z_um) / speed_um_s * fs)) + 1
            t_contact = (z0 - z_contact) / speed_um_s if z_contact >= stop_z_um else math.inf
            chunk = 1 << 15
            traces = []
            start = 0
            e_now = probe.potential_V
            run = confirm_samples + 1
            # the detector sees the blocks as one stream (runs span blocks)
            watch = ContactWatch(threshold_A, mode, confirm_samples, baseline_samples)
            result: ApproachResult | None = None
            # the first block ends shortly after the landing: detection nearly
            # always happens there, and samples past it would be wasted work
            land_abs = int(math.floor(t_contact * fs)) if math.isfinite(t_contact) else n_total
            first = land_abs + max(4 * run, 256)
            while start < n_total:
                n = min(first - start if start == 0 and first < chunk else chunk, n_total - start)
                t = (start + np.arange(n)) * dt
                z = z0 - speed_um_s * t
                i_true = np.zeros(n)
                land_idx = (
                    int(math.floor(t_contact * fs)) - start if math.isfinite(t_contact) else n
                )
                if land_idx < n:
                    li = max(land_idx, 0)
                    if probe.contact is None:
                        probe.contact = self._make_contact(probe)
                        q = self._landing_charge(probe, self.x_um, self.y_um)
                        t_off = t_contact - (start + li) * dt
                        i_true[li:] += self._spike(probe, n - li, dt, t_off, q)
                    i_true[li:] += self._cell_current(
                        probe, np.full(n - li, e_now), dt, e_now, self.clock.now + (start + li) * dt
                    )
                meas, _ = amp.measure(i_true, self.clock.now + start * dt)
                hit = watch.feed(meas)
                if hit is not None:
                    k = hit - start  # < 0: the run began in the previous block
                    stop_k = k + confirm_samples  # within this block
                    # the stop sample is known only at its end: the stage has
                    # moved through it (z[] is the height at a sample's start)
                    z_stop = float(z[stop_k]) - speed_um_s * dt
                    traces.append(np.vstack((t[: stop_k + 1], z[: stop_k + 1], meas[: stop_k + 1])))
                    z_first = float(z0 - speed_um_s * ((start + k) * dt))
                    result = ApproachResult(True, z_first, z_stop, float(t[stop_k]) + dt, "contact")
                    break
                traces.append(np.vstack((t, z, meas)))
                start += n
            if result is None:
                result = ApproachResult(
                    False, math.nan, float(stop_z_um), (n_total) * dt, "no contact"
                )
            probe.z_um = result.final_z_um
            self._update_contact_state(probe)
            if probe.contact is None:
                probe.next_landing = None  # a new try lands afresh
            if result.contact and probe.contact is None:
                # a false trigger above the surface (noise): the current says
                # contact but the meniscus is not there
                result.reason = "false trigger"
            self._advance(result.duration_s, measured=True)
            result.trace = np.hstack(traces) if traces else np.empty((3, 0))
            return result

    # -------------------------------------------------------------- potentiostat
    @_timed
    def acquire(self, program: Program, probe_name: str = "A") -> np.ndarray:
        """Run a potential program, hardware-timed; returns [t_s, E_V, I_A] rows.

        The program is sampled at the amplifier's rate (:meth:`Program.sample`);
        the probe's potential is left at its last value.
        """
        with self.lock:
            fs = self.probes[probe_name].amplifier.sample_rate_hz
            return self.acquire_samples(program.sample(fs), fs, probe_name)

    @_timed
    def acquire_samples(
        self, e: np.ndarray, sample_rate_hz: float, probe_name: str = "A"
    ) -> np.ndarray:
        """Apply the potentials ``e`` (V), one every ``1 / sample_rate_hz`` s
        (a DAQ's analog output buffer), and read the current at each; returns
        [t_s, E_V, I_A] rows."""
        with self.lock:
            self._check_failure("potentiostat")
            probe = self.probes[probe_name]
            amp = probe.amplifier
            e = np.asarray(e, dtype=float)
            n = e.size
            dt = 1.0 / float(sample_rate_hz)
            t0 = self.clock.now
            e_applied = e if probe.cell_on else np.full(n, probe.potential_V)
            i_true = self._cell_current(probe, e_applied, dt, probe.potential_V, t0)
            meas, _ = amp.measure(i_true, t0)
            if n:
                probe.potential_V = float(e[-1])
            self._advance(n * dt, measured=True)
            return np.vstack((t0 + np.arange(n) * dt, e_applied, meas))

    @_timed
    def read_current(self, probe_name: str = "A") -> float:
        """One sample of the current at the present potential, A."""
        probe = self.probes[probe_name]
        one = Program([Hold(probe.potential_V, 1.0 / probe.amplifier.sample_rate_hz)])
        trace = self.acquire(one, probe_name)
        return float(trace[2, -1]) if trace.shape[1] else 0.0

    def set_potential(self, volts: float, probe_name: str = "A") -> None:
        """Step the potential; a step while in contact charges the double layer."""
        with self.lock:
            self.probes[probe_name].potential_V = float(volts)
