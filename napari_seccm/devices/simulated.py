"""The simulated SECCM: one controller hub (``SimulatedSECCM``) over the physics
simulator, with the same peripherals a real rig has (``PiezoXY``, ``PiezoZ``,
``Potentiostat``, ``OpticalCamera``).

Initializing the hub starts a fresh simulated experiment (a new rig, with the
pipette 30 um above the film). Each film and pipette parameter of the simulated
world is a hub property with its unit in its name; setting one rebuilds the film
at once. ``TimeScale`` paces the simulated instrument: 0 (the default) runs every
operation as fast as the computer allows while the instrument clock
(``InstrumentTime_s``) keeps the true instrument time; 1 runs in real time, so
that ``busy()``, aborts and the GUI behave as on a real rig.

Operations run on the peripherals' workers: the simulator computes an
operation at once, then the worker lets its duration pass (scaled by
``TimeScale``); an abort in that time cuts the operation where it had got to
(the stage stops there, the trace ends there). At ``TimeScale`` 0 an operation
takes no wall time, and is carried out before the call returns (an instant
device: ``busy()`` is already false).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.experimental.unicore import pymm_property

from ..simulation import (
    CURRENT_RANGES_A,
    PIPETTE_STATES,
    DriftParameters,
    FilmParameters,
    PipetteParameters,
    SimulatedRig,
    optics,
)
from ..simulation.rig import timed_on
from ._base import register
from ._hub import SECCMHub

if TYPE_CHECKING:
    import threading
    from collections.abc import Hashable

    from ..model.program import Program

#: faults the simulated controller can be told to show (``InjectFailure``):
#: a device that raises on every use, one that never finishes until aborted,
#: an XY stage that stays where it is, a contact height reported 5 um low,
#: a potentiostat that returns NaN samples
FAULTS = (
    "none",
    "xy",
    "z",
    "potentiostat",
    "xy-hang",
    "z-hang",
    "potentiostat-hang",
    "xy-stuck",
    "contact-low",
    "nan-samples",
)


#: the simulated controller's work counts as the instrument's (on a rig, the
#: controller's firmware does it), so benchmarks subtract it from the software's
_hardware = timed_on(lambda ctrl: ctrl.rig)


class SimulatedController:
    """The controller behind the simulated hub: every peripheral's operations
    on one :class:`SimulatedRig`, paced by ``time_scale``."""

    current_ranges_A = CURRENT_RANGES_A

    def __init__(self, rig: SimulatedRig, time_scale: float = 0.0) -> None:
        self.rig = rig
        self.time_scale = time_scale
        self.fault = "none"
        self._motion: dict[Hashable, tuple[Any, Any, float, float]] = {}
        #: per probe: the precomputed trace of the approach in progress and
        #: its instrument duration
        self._ap_progress: dict[str, tuple[np.ndarray, float]] = {}

    # ------------------------------------------------------------ helpers
    def _check(self, what: str) -> None:
        if self.fault == what:
            raise RuntimeError(f"simulated {what} failure (injected)")

    def _hang(self, what: str, abort: threading.Event) -> bool:
        """An injected hang: wait until aborted; True if it hung."""
        if self.fault != f"{what}-hang":
            return False
        abort.wait()
        return True

    def _pace(
        self, key: Hashable, start: Any, end: Any, duration_s: float, abort: threading.Event
    ) -> float:
        """Let ``duration_s`` of instrument time pass in wall time (scaled);
        the fraction of the operation done when it ended (1: all of it)."""
        wall = duration_s * self.time_scale
        if wall <= 0:
            return 1.0
        t0 = time.perf_counter()
        self._motion[key] = (start, end, t0, wall)
        try:
            if abort.wait(wall):
                return min(1.0, (time.perf_counter() - t0) / wall)
            return 1.0
        finally:
            self._motion.pop(key, None)

    def _interp(self, key: Hashable) -> Any:
        m = self._motion.get(key)
        if m is None:
            return None
        start, end, t0, wall = m
        f = min(1.0, (time.perf_counter() - t0) / wall)
        if isinstance(start, tuple):
            return tuple(s + (e - s) * f for s, e in zip(start, end, strict=True))
        return start + (end - start) * f

    def _rewind(self, dt: float) -> None:
        """Give back instrument time that an aborted operation did not use."""
        if dt > 0:
            with self.rig.clock._lock:
                self.rig.clock.now -= dt

    @property
    def runs_inline(self) -> bool:
        """In fast mode (``TimeScale`` 0) an operation takes no wall time: the
        peripherals carry it out in the caller's thread (a thread hand-off
        would cost more than the operation). An injected hang always runs on
        the worker, so that it can be stopped."""
        return self.time_scale <= 0 and not self.fault.endswith("-hang")

    @_hardware
    def instrument_time_s(self) -> float:
        return self.rig.clock.now

    @_hardware
    def probe_health(self, probe: str) -> str:
        return self.rig.probe(probe).state

    # ---------------------------------------------------------------- XY
    @_hardware
    def get_xy_um(self) -> tuple[float, float]:
        moving = self._interp("xy")
        if moving is not None:
            return moving
        rig = self.rig
        return rig.x_um, rig.y_um

    @_hardware
    def move_xy_um(self, x: float, y: float, speed_um_s: float, abort: threading.Event) -> None:
        self._check("xy")
        if self._hang("xy", abort):
            return
        if self.fault == "xy-stuck":
            return  # the stage does not move (and says nothing)
        rig = self.rig
        x0, y0 = rig.x_um, rig.y_um
        d = math.hypot(x - x0, y - y0) / speed_um_s
        f = self._pace("xy", (x0, y0), (x, y), d, abort)
        rig.xy_speed_um_s = speed_um_s
        rig.move_xy(x0 + (x - x0) * f, y0 + (y - y0) * f)

    # ----------------------------------------------------------------- Z
    @_hardware
    def get_z_um(self, probe: str) -> float:
        moving = self._interp(("z", probe))
        return float(moving) if moving is not None else self.rig.probe(probe).z_um

    @_hardware
    def move_z_um(self, probe: str, z: float, speed_um_s: float, abort: threading.Event) -> None:
        self._check("z")
        if self._hang("z", abort):
            return
        z0 = self.rig.probe(probe).z_um
        f = self._pace(("z", probe), z0, z, abs(z - z0) / speed_um_s, abort)
        self.rig.move_z(z0 + (z - z0) * f, probe, speed_um_s)

    @_hardware
    def approach(
        self,
        probe: str,
        stop_z_um: float,
        speed_um_s: float,
        threshold_A: float,
        mode: str,
        confirm_samples: int,
        abort: threading.Event,
    ) -> dict[str, Any]:
        try:
            self._check("z")
            rig = self.rig
            p = rig.probe(probe)
            z0 = p.z_um
            if self._hang("z", abort):
                return _approach_dict(False, math.nan, z0, 0.0, "aborted", np.empty((3, 0)))
            r = rig.approach(
                stop_z_um, speed_um_s, threshold_A, mode, confirm_samples, probe_name=probe
            )
            # computed at once, it is published as its instrument time passes
            self._ap_progress[probe] = (r.trace, r.duration_s)
            f = self._pace(("z", probe), z0, r.final_z_um, r.duration_s, abort)
            if f < 1.0:  # stopped on the way down: where it had got to, no contact yet
                t_stop = f * r.duration_s
                z_stop = max(z0 - speed_um_s * t_stop, r.final_z_um)
                with rig.lock:
                    p.z_um = z_stop
                    gap = z_stop - rig.surface_um()
                    if p.contact is not None and gap > p.pipette.meniscus_height_um:
                        p.contact = None
                self._rewind(r.duration_s - t_stop)
                trace = r.trace[:, r.trace[0] <= t_stop] if r.trace.size else r.trace
                return _approach_dict(False, math.nan, z_stop, t_stop, "aborted", trace)
            contact_z = r.contact_z_um
            if self.fault == "contact-low" and r.contact:
                contact_z -= 5.0
            out = _approach_dict(
                r.contact, contact_z, r.final_z_um, r.duration_s, r.reason, r.trace
            )
            if r.contact:
                # the instrument's own loop stops at the sample that confirms
                fs = p.amplifier.sample_rate_hz
                out["detection_latency_s"] = (confirm_samples + 1) / fs
            return out
        finally:
            # its samples are the result's now: none for the next approach
            self._ap_progress.pop(probe, None)

    def approach_progress(self, probe: str) -> np.ndarray:
        """Rows [t_s, z_um, I_A] of the approach in progress so far: of the
        precomputed trace, the samples whose time has passed on the paced
        instrument (never one from its future); empty when none runs."""
        trace, duration = self._ap_progress.get(probe, (np.empty((3, 0)), 0.0))
        m = self._motion.get(("z", probe))
        if m is None:  # not paced (yet): nothing has happened
            return trace[:, :0]
        t0, wall = m[2], m[3]
        t_now = min(1.0, (time.perf_counter() - t0) / wall) * duration
        return trace[:, : int(np.searchsorted(trace[0], t_now, side="right"))]

    # ------------------------------------------------------- potentiostat
    @_hardware
    def set_cell(self, channel: str, on: bool) -> None:
        with self.rig.lock:
            self.rig.probe(channel).cell_on = bool(on)

    @_hardware
    def set_potential(self, channel: str, volts: float) -> None:
        self.rig.set_potential(volts, channel)

    @_hardware
    def read_current(self, channel: str) -> float:
        return self.rig.read_current(channel)

    @_hardware
    def configure(
        self, channel: str, *, range_A: float, filter_hz: float, sample_rate_hz: float
    ) -> None:
        self._check("potentiostat")  # an injected fault refuses settings too
        amp = self.rig.probe(channel).amplifier
        amp.range_A, amp.filter_hz, amp.sample_rate_hz = range_A, filter_hz, sample_rate_hz

    @_hardware
    def run_program(self, channel: str, program: Program, abort: threading.Event) -> np.ndarray:
        self._check("potentiostat")
        if self._hang("potentiostat", abort):
            return np.empty((3, 0))
        rig = self.rig
        trace = rig.acquire(program, channel)
        n = trace.shape[1]
        fs = rig.probe(channel).amplifier.sample_rate_hz
        f = self._pace(("wave", channel), 0, n, n / fs, abort)
        if f < 1.0:
            keep = int(f * n)
            self._rewind((n - keep) / fs)
            trace = trace[:, :keep]
            if keep:
                rig.set_potential(float(trace[1, -1]), channel)
        if self.fault == "nan-samples":
            trace = trace.copy()
            trace[2] = np.nan
        return trace

    # -------------------------------------------------------------- camera
    def snap(self, shape: tuple[int, int], pixel_um: float, exposure_ms: float) -> np.ndarray:
        rig = self.rig
        with rig.lock:
            fx, fy = rig.film_xy(rig.x_um, rig.y_um)  # the camera sees the film
            img = optics.render(
                rig.film,
                fx,
                fy,
                shape,
                pixel_um,
                rig.residues,
                rig.probe().z_um - rig.surface_um(),
                rig.rng,
                exposure_ms,
            )
            rig._advance(exposure_ms * 1e-3)
            return img

    def cells_off(self) -> None:
        with self.rig.lock:
            for p in self.rig.probes.values():
                p.cell_on = False


def _approach_dict(
    contact: bool, contact_z: float, final_z: float, duration: float, reason: str, trace: Any
) -> dict[str, Any]:
    return {
        "contact": bool(contact),
        "contact_z_um": float(contact_z),
        "final_z_um": float(final_z),
        "duration_s": float(duration),
        "reason": reason,
        "trace": trace,
    }


# property name -> (field, limits or allowed values, description)
FILM_PROPERTIES: dict[str, tuple[str, Any, str]] = {
    "Thickness_nm": ("thickness_nm", (1.0, 10_000.0), "film thickness"),
    "SigmaFast_S_per_cm": (
        "sigma_fast_S_per_cm",
        (1e-9, 1.0),
        "ab-plane (fast) ionic conductivity",
    ),
    "Anisotropy": ("anisotropy", (1.0, 1e4), "sigma_fast / sigma_slow (c axis)"),
    "SigmaFilm_S_per_cm": (
        "sigma_film_S_per_cm",
        (1e-9, 1.0),
        "in-plane conductivity of the film term",
    ),
    "StripePeriod_um": ("stripe_period_um", (0.0, 1000.0), "period of the [001] stripes (0: none)"),
    "StripeFraction001": ("stripe_fraction_001", (0.0, 1.0), "width fraction of [001] in a period"),
    "StripeAngle_deg": (
        "stripe_angle_deg",
        (-360.0, 360.0),
        "direction along the stripes, CCW from +x",
    ),
    "StripeOffset_um": (
        "stripe_offset_um",
        (-1000.0, 1000.0),
        "shift of the stripes across their direction",
    ),
    "StripeJitter_um": ("stripe_jitter_um", (0.0, 100.0), "rms wander of the stripe edges"),
    "StripeWidthScatter": (
        "stripe_width_scatter",
        (0.0, 2.0),
        "domains of several widths: sigma of ln(width) of each period and of each [001] "
        "stripe (log-normal, means kept; 0: regular stripes)",
    ),
    "DomainMapFile": (
        "domain_map_file",
        None,
        "label image (.npy/.tif; >0 = [001]) replacing the stripes",
    ),
    "DomainMapPixel_um": ("domain_map_pixel_um", (1e-4, 100.0), "pixel size of the label image"),
    "DomainMapOriginX_um": (
        "domain_map_origin_x_um",
        (-1e4, 1e4),
        "x of the label image's first column",
    ),
    "DomainMapOriginY_um": (
        "domain_map_origin_y_um",
        (-1e4, 1e4),
        "y of the label image's first row",
    ),
    "GrainSize_um": (
        "grain_size_um",
        (0.0, 1000.0),
        "mean grain size of the GB network (0: one grain)",
    ),
    "GBWidth_nm": ("gb_width_nm", (0.1, 1000.0), "width of a grain boundary"),
    "GBConductivityFactor": ("gb_conductivity_factor", (1e-8, 1.0), "sigma_GB / sigma_bulk"),
    "GrainFraction001": (
        "grain_fraction_001",
        (0.0, 1.0),
        "fraction of grains that are [001] as a whole (with StripePeriod_um 0: a film of "
        "grains only, each [100] or [001])",
    ),
    "FilmSeed": (
        "seed",
        (0, 2**31 - 1),
        "seed of the film's own random structure (stripe wander and widths, roughness, "
        "grains), apart from the noise Seed",
    ),
    "PadEdgeX_um": ("pad_edge_x_um", (-1e4, 1e4), "the Au pad covers x < this"),
    "PadCapacitance_F": (
        "pad_capacitance_F",
        (1e-12, 1.0),
        "capacitance of the blocking Au contact",
    ),
    "PadLeak_ohm": ("pad_leak_ohm", (1.0, 1e15), "leak resistance of the Au contact"),
    "ASR_ohm_cm2": ("asr_ohm_cm2", (0.0, 1e6), "area-specific Li+ transfer resistance"),
    "Cdl_uF_per_cm2": ("cdl_uF_per_cm2", (0.0, 1000.0), "double-layer capacitance"),
    "RestPotential_V": ("rest_potential_V", (-5.0, 5.0), "potential at which no current flows"),
    "LeakageEnabled": ("leakage_enabled", (0, 1), "electronic leakage below the onset (1: on)"),
    "LeakageOnset_V": ("leakage_onset_V", (-5.0, 5.0), "onset potential of electronic leakage"),
    "LeakageResistance_ohm": (
        "leakage_resistance_ohm",
        (1.0, 1e15),
        "resistance of the leakage branch",
    ),
    "HeightOffset_um": ("height_offset_um", (-1e3, 1e3), "mean surface height in the Z frame"),
    "TiltX_um_per_um": ("tilt_x_um_per_um", (-1.0, 1.0), "surface slope along x"),
    "TiltY_um_per_um": ("tilt_y_um_per_um", (-1.0, 1.0), "surface slope along y"),
    "Roughness_nm": ("roughness_nm", (0.0, 1000.0), "rms roughness"),
    "RoughnessLength_um": (
        "roughness_length_um",
        (0.01, 1000.0),
        "correlation length of the roughness",
    ),
    "StepHeight_nm": ("step_height_nm", (-1000.0, 1000.0), "height of substrate steps (0: none)"),
    "StepSpacing_um": ("step_spacing_um", (0.01, 1000.0), "terrace width"),
    "StepAngle_deg": ("step_angle_deg", (-360.0, 360.0), "direction along the step edges"),
}

PIPETTE_PROPERTIES: dict[str, tuple[str, Any, str]] = {
    "Pipette_TipRadius_nm": ("tip_radius_nm", (1.0, 10_000.0), "inner tip radius"),
    "Pipette_HalfAngle_deg": ("half_angle_deg", (0.1, 45.0), "half-cone angle"),
    "Pipette_Electrolyte_S_per_cm": (
        "electrolyte_S_per_cm",
        (1e-6, 1.0),
        "conductivity of the filling",
    ),
    "Pipette_FootprintRadius_nm": (
        "footprint_radius_nm",
        (1.0, 100_000.0),
        "droplet footprint radius",
    ),
    "Pipette_MeniscusHeight_um": (
        "meniscus_height_um",
        (0.0, 10.0),
        "tip height at which the meniscus lands",
    ),
    "Pipette_DetachHeight_um": (
        "detach_height_um",
        (0.0, 20.0),
        "tip height at which it detaches on retract",
    ),
    "Pipette_CrashDepth_um": (
        "crash_depth_um",
        (0.0, 10.0),
        "depth into the surface that breaks the tip",
    ),
    "Pipette_FootprintScatter": (
        "footprint_scatter",
        (0.0, 1.0),
        "landing-to-landing sigma of ln(footprint radius) (log-normal; 0.06 = 6 %, within "
        "the 5-10 % of SEM/AFM droplet residues in hopping SECCM; 0: none)",
    ),
    "Pipette_PartialWettingProbability": (
        "partial_wetting_probability",
        (0.0, 1.0),
        "chance that a landing wets only part of the footprint (0: never)",
    ),
    "Pipette_PartialWettingMinFactor": (
        "partial_wetting_min_factor",
        (0.01, 1.0),
        "a partly wetted footprint's radius is the usual one times U(this, 1)",
    ),
    "Pipette_LateLandingProbability": (
        "late_landing_probability",
        (0.0, 1.0),
        "chance that the meniscus fails to wet at its height and lands late, at a tip "
        "height U(0, meniscus height) (0: never)",
    ),
    "Pipette_MissProbability": (
        "miss_probability",
        (0.0, 1.0),
        "chance that an approach makes no meniscus contact at all (a tip whose liquid has "
        "retreated; going on past the crash depth breaks it) (0: never)",
    ),
    "Pipette_ResidueWettingGain": (
        "residue_wetting_gain",
        (0.0, 2.0),
        "a landing on old droplet residue wets wider: footprint radius x (1 + this x the "
        "fraction of the footprint on residue) (0: no effect)",
    ),
    "Pipette_Evaporation_per_h": (
        "evaporation_per_h",
        (0.0, 1.0),
        "rise of the pipette resistance per hour of the pipette's life, as the carbonates "
        "evaporate at the tip (fraction per hour; 0: none; a new pipette starts afresh)",
    ),
}

#: instrument drift (``SimulatedRig.drift``), the same layout as the tables above
DRIFT_PROPERTIES: dict[str, tuple[str, Any, str]] = {
    "DriftX_nm_per_h": (
        "x_nm_per_h",
        (-1e4, 1e4),
        "lateral thermal drift of the sample along +x (0: none)",
    ),
    "DriftY_nm_per_h": (
        "y_nm_per_h",
        (-1e4, 1e4),
        "lateral thermal drift of the sample along +y (0: none)",
    ),
    "DriftZ_nm_per_h": (
        "z_nm_per_h",
        (-1e4, 1e4),
        "thermal drift of the surface height, up positive (0: none)",
    ),
}


#: the hub property values that make the simulated film and droplet ideal: no
#: landing-to-landing scatter, wetting faults, residue, evaporation, drift, mains
#: pickup or 1/f noise (Johnson noise stays). For tests and demonstrations that
#: compare single landings with the formulas; the defaults are realistic.
IDEAL_PROPERTIES: dict[str, float] = {
    "Pipette_FootprintScatter": 0.0,
    "Pipette_PartialWettingProbability": 0.0,
    "Pipette_LateLandingProbability": 0.0,
    "Pipette_MissProbability": 0.0,
    "Pipette_ResidueWettingGain": 0.0,
    "Pipette_Evaporation_per_h": 0.0,
    "DriftX_nm_per_h": 0.0,
    "DriftY_nm_per_h": 0.0,
    "DriftZ_nm_per_h": 0.0,
    "MainsPickup_A": 0.0,
    "FlickerNoise_RelRMS": 0.0,
}


class SimulatedSECCM(SECCMHub):
    """The simulated SECCM controller: film, pipette, stages, potentiostat, camera."""

    SIMULATED = True

    PERIPHERALS = (
        ("PiezoXY", "lateral piezo stage"),
        ("PiezoZ", "Z piezo carrying the pipette, with the approach"),
        ("Potentiostat", "potential control and current amplifier"),
        ("OpticalCamera", "optical microscope looking at the pipette"),
    )

    def __init__(self) -> None:
        super().__init__()
        register(
            self,
            "Seed",
            0,
            "seed of the noise and of the landings (footprint scatter, wetting, late "
            "landings): same seed, same experiment; the film has its own FilmSeed",
            limits=(0, 2**31 - 1),
            is_pre_init=True,
        )
        self._film = FilmParameters()
        self._pipette = PipetteParameters()
        self._drift = DriftParameters()
        for name, (fld, spec, desc) in FILM_PROPERTIES.items():
            self._register_param(name, fld, spec, desc, is_film=True)
        for name, (fld, spec, desc) in PIPETTE_PROPERTIES.items():
            self._register_param(name, fld, spec, desc, is_film=False)
        for name, (fld, spec, desc) in DRIFT_PROPERTIES.items():
            self._register_drift(name, fld, spec, desc)
        self._time_scale = 0.0
        self._fault = "none"

    def _register_param(self, name: str, fld: str, spec: Any, desc: str, is_film: bool) -> None:
        current = getattr(self._film if is_film else self._pipette, fld)

        def getter(dev: SimulatedSECCM) -> Any:
            val = getattr(dev._film if is_film else dev._pipette, fld)
            return int(val) if isinstance(val, bool) else val

        def setter(dev: SimulatedSECCM, value: Any) -> None:
            dev._apply(is_film, fld, value)

        default = int(current) if isinstance(current, bool) else current
        self.register_property(
            name,
            default_value=default,
            getter=getter,
            setter=setter,
            property_type=type(default),
            limits=spec,
        )
        self.get_property_info(name).description = desc

    def _register_drift(self, name: str, fld: str, spec: Any, desc: str) -> None:
        def getter(dev: SimulatedSECCM) -> float:
            return getattr(dev._drift, fld)

        def setter(dev: SimulatedSECCM, value: Any) -> None:
            dev._drift = dataclasses.replace(dev._drift, **{fld: float(value)})
            if dev.controller is not None:
                with dev.rig.lock:  # the drift so far stays; its rate changes
                    dev.rig.drift = dev._drift

        default = getattr(self._drift, fld)
        self.register_property(
            name,
            default_value=default,
            getter=getter,
            setter=setter,
            property_type=float,
            limits=spec,
        )
        self.get_property_info(name).description = desc

    def _apply(self, is_film: bool, fld: str, value: Any) -> None:
        obj = self._film if is_film else self._pipette
        old = getattr(obj, fld)
        if isinstance(old, bool):
            value = bool(int(float(value)))
        elif isinstance(old, int):
            value = int(float(value))
        else:
            value = type(old)(value)
        new = dataclasses.replace(obj, **{fld: value})
        rig = self.rig if self.controller is not None else None
        if is_film:
            if rig is not None:
                rig.set_film(new)  # may raise (e.g. a missing domain map file)
            self._film = new
        else:
            if rig is not None:
                with rig.lock:
                    for probe in rig.probes.values():
                        probe.pipette = new
                        probe.next_landing = None  # drawn afresh with the new settings
            self._pipette = new

    def make_controller(self) -> SimulatedController:
        rig = SimulatedRig(film=self._film, seed=int(float(self.get_property_value("Seed"))))
        rig.drift = self._drift
        for probe in rig.probes.values():
            probe.pipette = self._pipette
            probe.z_um = rig.surface_um(0.0, 0.0) + 30.0
        ctrl = SimulatedController(rig, self._time_scale)
        ctrl.fault = self._fault
        return ctrl

    @property
    def rig(self) -> SimulatedRig:
        """The simulated instrument (ground truth, for tests and sample data)."""
        if self.controller is None:
            raise RuntimeError(f"{self.get_label()} is not initialized")
        return self.controller.rig

    @pymm_property(limits=(0.0, 1.0))
    def TimeScale(self) -> float:
        """0: instrument waits take no wall time; 1: real time; 0.1: ten times faster
        (never slower than real: the scan's deadlines assume the instrument's pace)."""
        return self._time_scale

    @TimeScale.setter
    def TimeScale(self, value: float) -> None:
        self._time_scale = float(value)
        if self.controller is not None:
            self.controller.time_scale = float(value)

    @pymm_property(is_read_only=True)
    def InstrumentTime_s(self) -> float:
        """Instrument time elapsed on this controller's clock, s."""
        return self.rig.clock.now

    @pymm_property(allowed_values=PIPETTE_STATES)
    def Pipette_State(self) -> str:
        """ok, clogged or broken (a crash breaks it; set ok to fit a new pipette)."""
        return self.rig.probe().state

    @Pipette_State.setter
    def Pipette_State(self, value: str) -> None:
        with self.rig.lock:
            probe = self.rig.probe()
            probe.state = str(value)
            if probe.state == "ok":
                probe.new_pipette()  # a freshly filled pipette: no evaporation yet

    @pymm_property(is_read_only=True)
    def SurfaceHeight_um(self) -> float:
        """True surface height under the pipette, um (the simulator's ground truth)."""
        return self.rig.surface_um()

    @pymm_property(allowed_values=FAULTS)
    def InjectFailure(self) -> str:
        """Make a device fail (raise, hang until aborted, stay put, report a wrong
        contact height or NaN samples) on every use until set back to none."""
        return self._fault

    @InjectFailure.setter
    def InjectFailure(self, value: str) -> None:
        self._fault = str(value)
        if self.controller is not None:
            self.controller.fault = str(value)

    @pymm_property(limits=(0.0, 1e-6))
    def MainsPickup_A(self) -> float:
        """Amplitude of 50 Hz mains pickup on the current, A (0: none; default 1 pA,
        a shielded set-up in a glovebox, well below the 3 pA contact threshold)."""
        return self.rig.probe().amplifier.mains_A

    @MainsPickup_A.setter
    def MainsPickup_A(self, value: float) -> None:
        self.rig.probe().amplifier.mains_A = float(value)

    @pymm_property(limits=(0.0, 1.0))
    def FlickerNoise_RelRMS(self) -> float:
        """rms of the 1/f (flicker) fluctuation of the ionic current in contact,
        relative to the current, over 1 mHz-10 Hz (Hooge-type pipette noise;
        0: none; default 0.01)."""
        return self.rig.probe().amplifier.flicker_rel

    @FlickerNoise_RelRMS.setter
    def FlickerNoise_RelRMS(self, value: float) -> None:
        self.rig.probe().amplifier.flicker_rel = float(value)


def simulated_rig(label: str = "SECCM") -> SimulatedRig:
    """The simulated instrument behind the loaded ``SimulatedSECCM`` hub called
    ``label``: the simulator's ground truth, for tests, benchmarks and sample data
    (nothing that runs a scan may use it)."""
    from ._hub import loaded_hub

    hub = loaded_hub(label, SimulatedSECCM)
    assert isinstance(hub, SimulatedSECCM)
    return hub.rig
