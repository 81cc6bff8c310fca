"""Preflight: record what the figures of :mod:`napari_seccm.analysis.preflight`
need, through the core, before a scan.

1. **Noise** (:func:`record_noise`): the potentiostat set to the plan's range,
   filter and sample rate, the cell on at the approach potential, the probe
   held where it is (in air) for ``noise_s`` seconds: one hardware-timed
   program (``Waveform`` / ``Acquire`` / ``LastTrace``).
2. **First landing** (:func:`record_landing`, optional): the Z stage's own
   approach from where it is, at the plan's search speed and threshold, at
   most the plan's search depth; at contact a staircase of potential steps
   (the approach potential, then ``n_steps`` steps of ``-step_V`` and back,
   each held ``hold_s``); then the probe is lifted by the plan's retract.

:func:`run_preflight` does both and computes the figures
(:class:`PreflightReport`: each with its unit and uncertainty; ``lines()``
for people, ``to_dict()`` for JSON). Everything goes through the core: the
same code runs on the simulated rig and on an instrument.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.preflight import (
    DEFAULT_FALSE_TRIGGERS_PER_APPROACH,
    ApertureFigures,
    NoiseFigures,
    StepFigures,
    ThresholdSuggestion,
    aperture_from_resistance,
    noise_figures,
    settle_samples,
    step_capacitance,
    suggest_threshold,
)
from .control import wait_idle

if TYPE_CHECKING:
    from collections.abc import Callable

    from pymmcore_plus import CMMCorePlus

    from .plan import ScanPlan

#: below this |E| a landing gives no current to detect (V): the approach would crash
MIN_LANDING_V = 0.05
#: noise record length limits, s
NOISE_S_LIMITS = (0.05, 60.0)
#: potential steps at the landing: defaults and limits
STEP_V, STEP_V_LIMITS = 0.2, (0.001, 1.0)
N_STEPS, N_STEPS_LIMITS = 10, (2, 200)
HOLD_S, HOLD_S_LIMITS = 0.03, (0.002, 1.0)


class PreflightStopped(RuntimeError):
    """Stop was pressed: the step in progress was aborted."""


def _check(name: str, value: float, lo: float, hi: float, unit: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"preflight {name} {value!r} {unit} is outside [{lo:g}, {hi:g}] {unit}")
    return v


def _setup_potentiostat(core: CMMCorePlus, plan: ScanPlan) -> str:
    """The plan's range, filter and rate on its potentiostat (the filter below
    half the rate at every step); its label."""
    ps = plan.potentiostat.label
    if ps not in core.getLoadedDevices():
        raise RuntimeError(f"potentiostat {ps!r} is not loaded")
    for prop in ("Waveform", "Acquire", "LastTrace"):
        if not core.hasProperty(ps, prop):
            raise RuntimeError(
                f"{ps} has no {prop} property: preflight needs hardware-timed programs"
            )
    pst = plan.potentiostat
    if float(core.getProperty(ps, "Filter_Hz")) > pst.sample_rate_Hz / 2:
        core.setProperty(ps, "Filter_Hz", pst.filter_Hz)
    core.setProperty(ps, "SampleRate_Hz", pst.sample_rate_Hz)
    core.setProperty(ps, "Filter_Hz", pst.filter_Hz)
    core.setProperty(ps, "CurrentRange_A", pst.current_range_A)
    return ps


def _run_program(
    core: CMMCorePlus, ps: str, segments: list[dict], what: str, should_stop: Any
) -> np.ndarray:
    core.setProperty(ps, "Waveform", json.dumps(segments))
    core.setProperty(ps, "Acquire", "Run")
    expected = sum(float(s["t"]) for s in segments)
    if not wait_idle(core, ps, 2 * expected + 5.0, what, should_stop):
        raise PreflightStopped(f"stopped during {what}")
    trace = core.getProperty(ps, "LastTrace")
    if not isinstance(trace, np.ndarray):  # a C++ adapter's text
        vals = [float(v) for v in str(trace).replace(";", ",").split(",") if v.strip()]
        trace = np.array(vals).reshape(3, -1)
    return np.asarray(trace, dtype=float)


def record_noise(
    core: CMMCorePlus,
    plan: ScanPlan,
    noise_s: float = 1.0,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Samples of the current with the probe where it is (in air), at the
    plan's range, filter and rate and the approach potential: rows [t_s, E_V, I_A]."""
    noise_s = _check("noise record", noise_s, *NOISE_S_LIMITS, "s")
    ps = _setup_potentiostat(core, plan)
    core.setProperty(ps, "Potential_V", plan.approach.potential_V)
    core.setProperty(ps, "Cell", "On")
    segs = [{"hold": plan.approach.potential_V, "t": noise_s}]
    return _run_program(core, ps, segs, "the noise record", should_stop)


@dataclass
class Landing:
    contact_z_um: float
    result: str
    trace: np.ndarray  # rows [t_s, E_V, I_A] of the steps


def record_landing(
    core: CMMCorePlus,
    plan: ScanPlan,
    *,
    step_V: float = STEP_V,
    n_steps: int = N_STEPS,
    hold_s: float = HOLD_S,
    should_stop: Callable[[], bool] | None = None,
) -> Landing:
    """Land with the Z stage's own approach (from where it is, at most the
    plan's search depth), record potential steps, lift by the plan's retract."""
    step_V = _check("potential step", step_V, *STEP_V_LIMITS, "V")
    n_steps = int(_check("number of steps", n_steps, *N_STEPS_LIMITS, "steps"))
    hold_s = _check("step hold", hold_s, *HOLD_S_LIMITS, "s")
    a = plan.approach
    if abs(a.potential_V) < MIN_LANDING_V:
        raise ValueError(
            f"preflight landing refused: the approach potential {a.potential_V:g} V gives no "
            f"contact current to detect (|E| must be at least {MIN_LANDING_V:g} V); nothing moved"
        )
    zdev = plan.probe_spec().z_stage or core.getFocusDevice()
    if not zdev or not core.hasProperty(zdev, "Approach"):
        raise RuntimeError(
            f"{zdev or 'the focus stage'} has no device-side approach: the preflight landing "
            "needs one (run the noise part alone)"
        )
    ps = _setup_potentiostat(core, plan)
    e0 = a.potential_V
    core.setProperty(ps, "Potential_V", e0)
    core.setProperty(ps, "Cell", "On")
    z = float(core.getPosition(zdev))
    zmin = float(core.getProperty(zdev, "ZMin_um")) if core.hasProperty(zdev, "ZMin_um") else -1e9
    floor = plan.safety.z_floor_um
    stop = max(z - a.search_depth_um, zmin, floor if floor is not None else -math.inf)
    if stop >= z:
        raise RuntimeError(f"{zdev} is at its lowest Z ({z:.3f} um): no room to approach")
    core.setProperty(zdev, "Approach_StopZ_um", stop)
    core.setProperty(zdev, "Approach_Speed_um_per_s", a.search_speed_um_per_s)
    core.setProperty(zdev, "Approach_Threshold_A", a.threshold_A)
    core.setProperty(zdev, "Approach_Detection", a.detection)
    core.setProperty(zdev, "Approach_ConfirmSamples", a.confirm_samples)
    core.setProperty(zdev, "Approach", "Start")
    if not wait_idle(
        core, zdev, 2 * (z - stop) / a.search_speed_um_per_s + 5.0, "the approach", should_stop
    ):
        raise PreflightStopped("stopped during the approach")
    result = str(core.getProperty(zdev, "Approach_Result"))
    if result not in ("contact", "manual contact", "already in contact"):
        raise RuntimeError(
            f"no landing for the preflight: the approach ended with {result!r} at Z = "
            f"{float(core.getPosition(zdev)):.3f} um (searched down to {stop:.3f} um)"
        )
    cz = float(core.getProperty(zdev, "Approach_ContactZ_um"))
    if not math.isfinite(cz):
        cz = float(core.getPosition(zdev))
    segs = [{"hold": e0, "t": 2 * hold_s}]
    for _ in range(n_steps):
        segs += [{"hold": e0 - step_V, "t": hold_s}, {"hold": e0, "t": hold_s}]
    try:
        trace = _run_program(core, ps, segs, "the potential steps", should_stop)
    finally:
        # lifted off whatever happened (a refused program, Stop): never left in contact
        target = cz + plan.retract_um
        if core.hasProperty(zdev, "Speed_um_per_s"):
            core.setProperty(zdev, "Speed_um_per_s", a.fast_speed_um_per_s)
        core.setPosition(zdev, target)
        wait_idle(core, zdev, 2 * plan.retract_um / a.fast_speed_um_per_s + 5.0, "the retract")
    return Landing(cz, result, trace)


def approach_duration_s(plan: ScanPlan) -> float:
    """The slow part of one landing's approach, s: the plan's slow zone at its slow speed."""
    a = plan.approach
    return a.slow_zone_um / a.slow_speed_um_per_s


@dataclass
class PreflightReport:
    """Every preflight figure, with what it was measured at."""

    range_A: float
    filter_Hz: float
    sample_rate_Hz: float
    potential_V: float
    noise: NoiseFigures
    threshold: ThresholdSuggestion
    plan_threshold_A: float
    plan_threshold_per_approach: float
    steps: StepFigures | None = None
    aperture: ApertureFigures | None = None
    contact_z_um: float = math.nan
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in (
                "range_A",
                "filter_Hz",
                "sample_rate_Hz",
                "potential_V",
                "plan_threshold_A",
                "plan_threshold_per_approach",
                "contact_z_um",
                "warnings",
            )
        }
        out["noise"] = self.noise.to_dict()
        out["threshold"] = self.threshold.to_dict()
        out["steps"] = self.steps.to_dict() if self.steps else None
        out["aperture"] = self.aperture.to_dict() if self.aperture else None
        return out

    def lines(self) -> list[str]:
        """The figures for people: each with its unit and uncertainty."""
        from .._format import si

        n, t = self.noise, self.threshold
        out = [
            f"settings        range {si(self.range_A, 'A')}, filter {self.filter_Hz:g} Hz, "
            f"{self.sample_rate_Hz:g} Hz sampling, E = {self.potential_V:g} V",
            f"noise (in air)  {si(n.sigma_A, 'A')} +- {si(n.sigma_err_A, 'A')} rms broadband; "
            f"{si(n.rms_A, 'A')} rms in all; offset {si(n.mean_A, 'A')}; "
            f"{n.duration_s:g} s, {n.n_samples} samples",
        ]
        if n.lines:
            lines = ", ".join(
                f"{li.frequency_Hz:g} Hz {si(li.amplitude_A, 'A')} +- {si(li.amplitude_err_A, 'A')}"
                for li in n.lines
            )
            out.append(f"mains lines     {lines} (amplitudes)")
        out.append(
            f"threshold       {si(t.threshold_A, 'A')} suggested ({t.mode}; {t.k_sigma:.2f} sigma "
            f"above the lines): <= {t.per_approach:.2g} false triggers per approach of "
            f"{t.approach_s:g} s ({t.rate_per_s:.2g} /s; {t.method}); fired "
            f"{t.fired_on_record} times on the {t.record_s:g} s record"
        )
        out.append(
            f"plan threshold  {si(self.plan_threshold_A, 'A')}: <= "
            f"{self.plan_threshold_per_approach:.2g} false triggers per approach"
        )
        if self.steps is not None:
            s = self.steps
            out.append(
                f"landing         contact at Z = {self.contact_z_um:.3f} um; {s.n_steps} steps of "
                f"{s.step_V * 1e3:g} mV"
            )
            out.append(
                f"capacitance     {si(s.capacitance_F, 'F')} +- {si(s.capacitance_err_F, 'F')} "
                "charged at a potential step (double layer of the footprint + stray)"
            )
            out.append(
                f"resistance      {si(s.resistance_ohm, 'Ohm')} +- "
                f"{si(s.resistance_err_ohm, 'Ohm')} (dE / dI at the landing)"
            )
        if self.aperture is not None:
            ap = self.aperture
            bound = " (a lower bound)" if ap.lower_bound else ""
            out.append(
                f"aperture        tip radius {ap.tip_radius_nm:.3g} +- {ap.tip_radius_err_nm:.2g} "
                f"nm{bound} from R_pipette = {si(ap.pipette_ohm, 'Ohm')}; footprint "
                f"~{ap.footprint_diameter_um:.3g} um across (plan: "
                + (
                    f"{ap.plan_footprint_diameter_um:g} um)"
                    if ap.plan_footprint_diameter_um
                    else "none)"
                )
            )
        for w in self.warnings:
            out.append(f"warning         {w}")
        return out


def run_preflight(
    core: CMMCorePlus,
    plan: ScanPlan,
    *,
    noise_s: float = 1.0,
    landing: bool = True,
    step_V: float = STEP_V,
    n_steps: int = N_STEPS,
    hold_s: float = HOLD_S,
    sample_ohm: float | None = None,
    target_per_approach: float = DEFAULT_FALSE_TRIGGERS_PER_APPROACH,
    should_stop: Callable[[], bool] | None = None,
) -> PreflightReport:
    """Record the noise (and, with ``landing``, a first landing's steps) and
    compute every figure. The potentiostat's cell is left as it was found."""
    ps = plan.potentiostat.label
    cell_before = str(core.getProperty(ps, "Cell")) if ps in core.getLoadedDevices() else "Off"
    a = plan.approach
    try:
        tr = record_noise(core, plan, noise_s, should_stop)
        pst = plan.potentiostat
        tr = tr[:, settle_samples(pst.filter_Hz, pst.sample_rate_Hz) :]
        noise = noise_figures(tr[2], pst.sample_rate_Hz)
        t_ap = approach_duration_s(plan)
        sug = suggest_threshold(
            noise,
            t_ap,
            mode=a.detection,
            confirm_samples=a.confirm_samples,
            target_per_approach=target_per_approach,
            samples=tr[2],
        )
        from ..analysis.preflight import false_trigger_probability

        report = PreflightReport(
            range_A=float(core.getProperty(ps, "CurrentRange_A")),
            filter_Hz=float(core.getProperty(ps, "Filter_Hz")),
            sample_rate_Hz=float(core.getProperty(ps, "SampleRate_Hz")),
            potential_V=a.potential_V,
            noise=noise,
            threshold=sug,
            plan_threshold_A=a.threshold_A,
            plan_threshold_per_approach=false_trigger_probability(
                a.threshold_A, noise, t_ap, a.detection
            ),
        )
        levels = np.unique(tr[2]).size
        if levels < 6:
            report.warnings.append(
                f"the current in air took only {levels} distinct values: the noise is below "
                f"the converter's resolution at the {report.range_A:.3g} A range, so these "
                "noise figures are the converter's steps, not the amplifier's noise"
            )
        if abs(noise.mean_A) > a.threshold_A:
            report.warnings.append(
                f"the current in air averages {noise.mean_A:.3g} A, above the plan's threshold "
                f"{a.threshold_A:.3g} A: is the probe in contact, or the offset too large?"
            )
        if report.plan_threshold_per_approach > target_per_approach:
            report.warnings.append(
                f"the plan's threshold {a.threshold_A:.3g} A gives up to "
                f"{report.plan_threshold_per_approach:.2g} false triggers per approach "
                f"(target {target_per_approach:g}): raise it to {sug.threshold_A:.3g} A"
            )
        if landing:
            land = record_landing(
                core,
                plan,
                step_V=step_V,
                n_steps=n_steps,
                hold_s=hold_s,
                should_stop=should_stop,
            )
            report.contact_z_um = land.contact_z_um
            st = step_capacitance(
                land.trace[0], land.trace[1], land.trace[2], filter_Hz=report.filter_Hz
            )
            report.steps = st
            pip = plan.pipette
            ap = aperture_from_resistance(
                st.resistance_ohm,
                st.resistance_err_ohm,
                half_angle_deg=pip.half_angle_deg,
                electrolyte_S_per_cm=pip.electrolyte_S_per_cm,
                sample_ohm=sample_ohm,
                wetting_ratio=pip.footprint_radius_nm / pip.tip_radius_nm,
                plan_footprint_diameter_um=plan.footprint_diameter_um,
                plan_tip_radius_nm=pip.tip_radius_nm,
            )
            report.aperture = ap
            report.warnings.extend(ap.warnings)
        return report
    finally:
        if ps in core.getLoadedDevices():
            try:
                core.setProperty(ps, "Cell", cell_before)
            except Exception:  # the emergency stop may refuse "On": leave it off
                core.setProperty(ps, "Cell", "Off")
