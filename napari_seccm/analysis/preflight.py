"""Preflight figures from recorded samples: the current noise, a contact
threshold with its false-trigger rate, the capacitance charged at a potential
step, and the pipette's aperture from its resistance.

Pure numpy/scipy on arrays (the samples come from
:mod:`napari_seccm.acquisition.preflight`, which records them through the
core); every figure comes with its uncertainty and unit.

- **Noise** (:func:`noise_figures`): the probe held in air at the chosen range
  and filter. Mains pickup (50 and 60 Hz and their 2nd and 3rd harmonics) is a
  deterministic line, not Gaussian noise: each line is fitted (least squares)
  and kept when its amplitude exceeds 4 standard errors. What remains is the
  broadband noise, with its rms ``sigma``; the rms' uncertainty is
  ``sigma / sqrt(2 N_eff)`` with the effective number of independent samples
  ``N_eff = N / (1 + 2 sum rho_k)`` from the samples' autocorrelation. The
  spectrum is Welch's (Hann windows of 1/8 of the record).
- **False triggers** (:func:`false_trigger_rate`): Rice's formula for a
  sampled Gaussian process: upcrossings of the level ``u`` per second
  ``nu(u) = fs arccos(rho_1) / (2 pi) exp(-u^2 / (2 sigma^2))``
  (``arccos(rho_1) / 2 pi`` is the zero-crossing rate per sample of a
  Gaussian sequence with lag-1 correlation ``rho_1``), and never above the
  Gaussian tail ``fs Q(u / sigma)`` (an upcrossing needs a sample above ``u``). The lines add at most
  their summed amplitude, so the level the noise must reach is the threshold
  minus that sum minus the offset from zero: a worst case. Every confirmed
  detection starts with an upcrossing, so ``nu`` is an upper bound of the
  detector's false-trigger rate: the confirm samples are not credited. The
  probability of a false trigger in one approach of ``T`` seconds is
  ``1 - exp(-nu T)``. :func:`suggest_threshold` returns the lowest threshold
  that keeps it below a target (default 1 in 1000 approaches).
- **Capacitance** (:func:`step_capacitance`): at a landing, the potential is
  stepped by ``dV``; the charge of each step's transient is the current
  above a baseline (before and after, with a step, a slope and the mains
  lines, fitted by least squares outside the transient) summed over the
  transient: ``C = Q / dV`` (``i = C dV/dt`` integrated). The same steady
  currents give the landing's resistance, ``R = dV / dI``.
- **Aperture** (:func:`aperture_from_resistance`): the pipette term of the
  series model, ``R_pipette = rho / (pi r tan(theta))``, solved for the tip
  radius ``r`` with ``R_pipette = R_total - R_sample``. The sample terms
  (interface, spreading, film) are what the experiment measures and are
  often unknown: without them ``R_total`` over-estimates ``R_pipette`` and
  the radius is a lower bound (said so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: mains frequencies whose lines (and 2nd, 3rd harmonics) are fitted, Hz
MAINS_HZ = (50.0, 60.0)
#: a line is kept when its amplitude exceeds this many standard errors
LINE_SIGNIFICANCE = 4.0
#: default target: at most one false trigger in this many approaches
DEFAULT_FALSE_TRIGGERS_PER_APPROACH = 1e-3
#: the plan's footprint estimate and the aperture's disagree beyond this factor: a warning
FOOTPRINT_FACTOR = 2.0


# ----------------------------------------------------------------- helpers
def _autocorr(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation of ``x`` (mean removed) at lags 0..max_lag."""
    x = x - x.mean()
    v = float(np.dot(x, x))
    if v <= 0:
        return np.concatenate(([1.0], np.zeros(max_lag)))
    return np.array([1.0] + [float(np.dot(x[:-k], x[k:])) / v for k in range(1, max_lag + 1)])


def effective_samples(x: np.ndarray) -> float:
    """``N / (1 + 2 sum rho_k)``, the sum over lags until rho first drops below
    0.05 (at most 1000 lags): the independent samples a correlated record is worth."""
    n = x.size
    rho = _autocorr(x, min(1000, max(n // 4, 1)))
    s = 0.0
    for r in rho[1:]:
        if r < 0.05:
            break
        s += r
    return n / (1.0 + 2.0 * s)


def _line_design(t: np.ndarray, freqs: list[float]) -> np.ndarray:
    cols = [np.ones_like(t)]
    for f in freqs:
        w = 2 * math.pi * f * t
        cols.extend((np.sin(w), np.cos(w)))
    return np.column_stack(cols)


@dataclass
class Line:
    """A deterministic line (mains pickup) in the noise."""

    frequency_Hz: float
    amplitude_A: float
    amplitude_err_A: float


@dataclass
class NoiseFigures:
    """The current noise at one range / filter / sample rate."""

    n_samples: int
    sample_rate_Hz: float
    duration_s: float
    mean_A: float
    rms_A: float  # total, lines included
    sigma_A: float  # broadband (lines removed)
    sigma_err_A: float
    rho1: float  # lag-1 autocorrelation of the broadband noise
    n_effective: float
    lines: list[Line] = field(default_factory=list)
    #: Welch spectrum: frequencies (Hz) and one-sided PSD (A^2/Hz)
    psd_f_Hz: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    psd_A2_per_Hz: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def lines_amplitude_A(self) -> float:
        return float(sum(abs(li.amplitude_A) for li in self.lines))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("psd_f_Hz")
        d.pop("psd_A2_per_Hz")
        return d


def settle_samples(filter_Hz: float, sample_rate_Hz: float) -> int:
    """Samples at the start of a record that the amplifier's one-pole filter
    needs to settle (10 time constants): left out of the noise figures."""
    return int(math.ceil(10.0 * sample_rate_Hz / (2 * math.pi * filter_Hz)))


def noise_figures(current_A: np.ndarray, sample_rate_Hz: float) -> NoiseFigures:
    """Noise of samples recorded with the probe in air (no contact), after
    the filter has settled (see :func:`settle_samples`)."""
    from scipy.signal import welch

    i = np.asarray(current_A, dtype=float)
    fs = float(sample_rate_Hz)
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"sample rate {sample_rate_Hz!r} Hz must be a positive number")
    if i.ndim != 1 or i.size < 64:
        raise ValueError(f"noise needs at least 64 samples in one row, got shape {i.shape}")
    if not np.isfinite(i).all():
        bad = int(np.flatnonzero(~np.isfinite(i))[0])
        raise ValueError(
            f"noise samples must be finite numbers; sample {bad} is {float(i[bad])!r} A"
        )
    t = np.arange(i.size) / fs
    nyq = fs / 2
    cand = [k * f for f in MAINS_HZ for k in (1, 2, 3) if k * f < 0.9 * nyq]
    # a line needs a few periods in the record to be told from a slow trend
    cand = [f for f in cand if f * t[-1] >= 3]
    lines: list[Line] = []
    resid = i - i.mean()
    if cand:
        X = _line_design(t, cand)
        coef, *_ = np.linalg.lstsq(X, i, rcond=None)
        resid = i - X @ coef
        s0 = float(np.std(resid))
        neff = effective_samples(resid)
        # standard error of a sin / cos coefficient: sigma sqrt(2 / N_eff)
        se = s0 * math.sqrt(2.0 / max(neff, 1.0))
        keep = []
        for k, f in enumerate(cand):
            a = math.hypot(coef[1 + 2 * k], coef[2 + 2 * k])
            if a > LINE_SIGNIFICANCE * se:
                keep.append(f)
                lines.append(Line(f, a, se))
        X = _line_design(t, keep)
        coef, *_ = np.linalg.lstsq(X, i, rcond=None)
        resid = i - X @ coef
        for k, li in enumerate(lines):
            li.amplitude_A = math.hypot(coef[1 + 2 * k], coef[2 + 2 * k])
    sigma = float(np.std(resid))
    neff = effective_samples(resid)
    rho1 = float(_autocorr(resid, 1)[1])
    nper = max(64, i.size // 8)
    f, p = welch(i - i.mean(), fs=fs, nperseg=min(nper, i.size))
    return NoiseFigures(
        n_samples=int(i.size),
        sample_rate_Hz=fs,
        duration_s=i.size / fs,
        mean_A=float(i.mean()),
        rms_A=float(np.std(i)),
        sigma_A=sigma,
        sigma_err_A=sigma / math.sqrt(2.0 * max(neff, 1.0)),
        rho1=rho1,
        n_effective=float(neff),
        lines=lines,
        psd_f_Hz=f,
        psd_A2_per_Hz=p,
    )


# ----------------------------------------------------------- thresholds
def upcrossing_rate(level_A: float, noise: NoiseFigures) -> float:
    """Rice: upcrossings per second of ``level_A`` by the broadband noise
    (zero mean, Gaussian, sampled; see the module's notes)."""
    s = noise.sigma_A
    if s <= 0:
        return 0.0 if level_A > 0 else math.inf
    rho = min(max(noise.rho1, -1.0), 1.0)
    per_sample = math.acos(rho) / (2 * math.pi) * math.exp(-(level_A**2) / (2 * s * s))
    # an upcrossing at a sample needs that sample above the level: never
    # more often than the Gaussian tail Q(u / sigma) per sample
    tail = 0.5 * math.erfc(level_A / (s * math.sqrt(2)))
    return noise.sample_rate_Hz * min(per_sample, tail)


def _levels(threshold_A: float, noise: NoiseFigures, mode: str) -> list[float]:
    """The levels the broadband noise must reach for the detector to fire,
    worst case (the lines at their peak, the offset counted against)."""
    lines = noise.lines_amplitude_A
    thr = abs(float(threshold_A))
    if mode == "absolute":
        mu = noise.mean_A
        return [thr - lines - mu, thr - lines + mu]  # up past +thr, down past -thr
    if mode == "rise":
        return [thr - 2 * lines]  # the baseline may sit at the lines' trough
    if mode == "either":
        return [thr - 2 * lines, thr - 2 * lines]
    raise ValueError(f"detection mode must be absolute, rise or either, not {mode!r}")


def false_trigger_rate(threshold_A: float, noise: NoiseFigures, mode: str = "absolute") -> float:
    """Upper bound of false triggers per second at ``threshold_A`` (A)."""
    total = 0.0
    for u in _levels(threshold_A, noise, mode):
        if u <= 0:
            return math.inf  # the lines or the offset alone reach the threshold
        total += upcrossing_rate(u, noise)
    return total


def false_trigger_probability(
    threshold_A: float, noise: NoiseFigures, approach_s: float, mode: str = "absolute"
) -> float:
    """Probability of at least one false trigger in an approach of ``approach_s`` s."""
    rate = false_trigger_rate(threshold_A, noise, mode)
    return 1.0 if math.isinf(rate) else -math.expm1(-rate * max(approach_s, 0.0))


@dataclass
class ThresholdSuggestion:
    threshold_A: float
    k_sigma: float  # (threshold - lines) / sigma
    rate_per_s: float
    per_approach: float
    approach_s: float
    target_per_approach: float
    mode: str
    #: how many times the detector (with its confirm samples) fired on the
    #: recorded noise itself at this threshold, and the record's length
    fired_on_record: int
    record_s: float
    method: str = (
        "Rice upcrossing rate of the broadband Gaussian noise, mains lines at their peak, "
        "confirm samples not credited (an upper bound)"
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest_threshold(
    noise: NoiseFigures,
    approach_s: float,
    *,
    mode: str = "absolute",
    confirm_samples: int = 3,
    target_per_approach: float = DEFAULT_FALSE_TRIGGERS_PER_APPROACH,
    samples: np.ndarray | None = None,
) -> ThresholdSuggestion:
    """The lowest threshold whose false-trigger probability per approach of
    ``approach_s`` seconds is at most ``target_per_approach``."""
    if not (0 < target_per_approach < 1):
        raise ValueError(
            f"target false triggers per approach {target_per_approach!r} must be in (0, 1)"
        )
    if not (math.isfinite(approach_s) and approach_s > 0):
        raise ValueError(f"approach duration {approach_s!r} s must be a positive number")
    rate_max = -math.log1p(-target_per_approach) / approach_s
    s = noise.sigma_A
    n_levels = len(_levels(1.0, noise, mode))
    base = math.acos(min(max(noise.rho1, -1.0), 1.0)) / (2 * math.pi) * noise.sample_rate_Hz
    # the level at which each of the (equal) crossings gives rate_max / n_levels
    ratio = n_levels * base / rate_max
    u = s * math.sqrt(2.0 * math.log(ratio)) if ratio > 1 else 0.0
    extra = noise.lines_amplitude_A * (1 if mode == "absolute" else 2)
    thr = u + extra + (abs(noise.mean_A) if mode == "absolute" else 0.0)
    # numerically exact against the rate function (offset terms)
    for _ in range(60):
        if false_trigger_rate(thr, noise, mode) <= rate_max * (1 + 1e-9):
            break
        thr *= 1.01
    rate = false_trigger_rate(thr, noise, mode)
    fired = 0
    if samples is not None:
        from ..model.detect import contact_fired

        hits = contact_fired(np.asarray(samples, float), thr, mode, 50)
        run = int(confirm_samples) + 1
        if hits.size >= run:
            win = np.lib.stride_tricks.sliding_window_view(hits, run).all(axis=1)
            starts = win & ~np.concatenate(([False], win[:-1]))
            fired = int(starts.sum())
    return ThresholdSuggestion(
        threshold_A=float(thr),
        k_sigma=float((thr - extra) / s) if s > 0 else math.inf,
        rate_per_s=float(rate),
        per_approach=float(-math.expm1(-rate * approach_s)),
        approach_s=float(approach_s),
        target_per_approach=float(target_per_approach),
        mode=mode,
        fired_on_record=fired,
        record_s=noise.duration_s,
    )


# ------------------------------------------------------- step transients
@dataclass
class StepFigures:
    """Capacitance and resistance from potential steps at a landing."""

    capacitance_F: float
    capacitance_err_F: float
    resistance_ohm: float
    resistance_err_ohm: float
    n_steps: int
    step_V: float
    charges_C: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _step_design(k: np.ndarray, tt: np.ndarray, a: float, freqs: list[float]) -> np.ndarray:
    """Baseline around a step at sample 0: a level, the steady current's step
    as the one-pole filter passes it (``1 - a^(k+1)``), a slope, the mains lines."""
    step = np.where(k >= 0, 1.0 - a ** (np.maximum(k, 0) + 1.0), 0.0)
    cols = [np.ones_like(tt), step, tt]
    for f in freqs:
        w = 2 * math.pi * f * tt
        cols.extend((np.sin(w), np.cos(w)))
    return np.column_stack(cols)


def step_capacitance(
    time_s: np.ndarray,
    potential_V: np.ndarray,
    current_A: np.ndarray,
    *,
    filter_Hz: float,
    transient_s: float | None = None,
    baseline_s: float | None = None,
) -> StepFigures:
    """Charge and steady-current change of every potential step in a trace
    (rows recorded at a landing). ``filter_Hz``: the amplifier's cut-off (its
    impulse response sets how long a transient lasts: 10 time constants by
    default); ``baseline_s``: the fitted stretch on either side (default:
    up to 10 ms, within the holds)."""
    t = np.asarray(time_s, float)
    e = np.asarray(potential_V, float)
    i = np.asarray(current_A, float)
    if not (t.shape == e.shape == i.shape and t.ndim == 1):
        raise ValueError(
            f"time, potential and current must be rows of one length, got {t.shape}, "
            f"{e.shape}, {i.shape}"
        )
    if not (np.isfinite(t).all() and np.isfinite(e).all() and np.isfinite(i).all()):
        raise ValueError("the step trace holds samples that are not finite numbers")
    if not (math.isfinite(filter_Hz) and filter_Hz > 0):
        raise ValueError(f"filter {filter_Hz!r} Hz must be a positive number")
    if t.size < 16:
        raise ValueError(f"a step trace needs at least 16 samples, got {t.size}")
    dt = float(np.median(np.diff(t)))
    de = np.diff(e)
    steps = np.flatnonzero(np.abs(de) > 1e-6) + 1  # the first sample at the new potential
    if steps.size == 0:
        raise ValueError("the trace holds no potential step: nothing to measure the capacitance by")
    tau = 1.0 / (2 * math.pi * filter_Hz)
    a = math.exp(-dt / tau)  # the one-pole filter's memory per sample
    n_tr = max(int(math.ceil((transient_s or 10 * tau) / dt)), 2)
    freqs = [f for f in MAINS_HZ if f < 0.45 / dt]
    edges = np.concatenate(([0], steps, [t.size]))
    charges, dvs, dis = [], [], []
    for k, s in enumerate(steps):
        before = edges[k]
        after = edges[k + 2]
        n_base = int(round((baseline_s or 0.01) / dt))
        lo = max(before + n_tr, s - n_base)  # skip the previous step's transient
        hi = min(after, s + n_tr + n_base)
        pre = np.arange(lo, s)
        post = np.arange(s + n_tr, hi)
        if pre.size < 8 or post.size < 8:
            continue
        idx = np.concatenate((pre, post))
        coef = np.linalg.lstsq(_step_design(idx - s, t[idx] - t[s], a, freqs), i[idx], rcond=None)[
            0
        ]
        win = np.arange(s, s + n_tr)
        base = _step_design(win - s, t[win] - t[s], a, freqs) @ coef
        q = float(np.sum(i[win] - base) * dt)
        charges.append(q)
        dvs.append(float(e[s] - e[s - 1]))
        dis.append(float(coef[1]))
    if not charges:
        raise ValueError(
            "no step has enough steady samples on both sides: hold each potential for at "
            f"least {2 * n_tr * dt * 1e3:.3g} ms"
        )
    q, dv, di = np.array(charges), np.array(dvs), np.array(dis)
    c_each = q / dv
    g_each = di / dv  # conductances average without the bias of 1 / mean(R)
    n = c_each.size
    c = float(np.mean(c_each))
    g = float(np.mean(g_each))
    c_err = float(np.std(c_each, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    g_err = float(np.std(g_each, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    r = 1.0 / g if g > 0 else math.inf
    return StepFigures(
        capacitance_F=c,
        capacitance_err_F=c_err,
        resistance_ohm=r,
        resistance_err_ohm=r * g_err / g if g > 0 else math.nan,
        n_steps=n,
        step_V=float(np.median(np.abs(dv))),
        charges_C=[float(v) for v in q],
    )


# ------------------------------------------------------------- aperture
@dataclass
class ApertureFigures:
    tip_radius_nm: float
    tip_radius_err_nm: float
    pipette_ohm: float
    total_ohm: float
    sample_ohm: float
    #: True when the sample terms were not subtracted: the radius is a lower bound
    lower_bound: bool
    #: the footprint diameter this aperture implies (the plan's wetting ratio), um
    footprint_diameter_um: float
    plan_footprint_diameter_um: float | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def aperture_from_resistance(
    total_ohm: float,
    total_err_ohm: float,
    *,
    half_angle_deg: float,
    electrolyte_S_per_cm: float,
    sample_ohm: float | None = None,
    wetting_ratio: float = 1.5,
    plan_footprint_diameter_um: float | None = None,
    plan_tip_radius_nm: float | None = None,
    factor: float = FOOTPRINT_FACTOR,
) -> ApertureFigures:
    """Tip radius from the landing's resistance through the pipette term of
    the series model; ``sample_ohm``: the sample's terms if known (None: not
    subtracted, the radius is a lower bound). ``wetting_ratio``: footprint
    radius / tip radius (the plan's pipette); the implied footprint is
    compared with the plan's estimate and a warning is given when they differ
    by more than ``factor``."""
    for name, v in (
        ("resistance", total_ohm),
        ("half angle", half_angle_deg),
        ("electrolyte conductivity", electrolyte_S_per_cm),
        ("wetting ratio", wetting_ratio),
    ):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"aperture: the {name} must be a positive number, got {v!r}")
    sample = 0.0 if sample_ohm is None else float(sample_ohm)
    r_pip = total_ohm - sample
    warnings: list[str] = []
    if r_pip <= 0:
        raise ValueError(
            f"aperture: the sample's terms ({sample:.3g} Ohm) are not below the measured "
            f"resistance ({total_ohm:.3g} Ohm): no pipette term is left"
        )
    rho = 1.0 / (electrolyte_S_per_cm * 100.0)  # Ohm m
    tan = math.tan(math.radians(half_angle_deg))
    r_m = rho / (math.pi * r_pip * tan)
    r_nm = r_m * 1e9
    err_nm = r_nm * (total_err_ohm / r_pip) if math.isfinite(total_err_ohm) else math.nan
    fp_um = 2 * r_nm * wetting_ratio * 1e-3
    if sample_ohm is None:
        warnings.append(
            "the sample's series terms (interface, spreading, film) were not subtracted: "
            f"the tip radius {r_nm:.3g} nm is a lower bound"
        )

    # without the sample's terms the true radius (and footprint) is larger
    # than found: only an estimate already below the bound disagrees
    def off(plan_value: float, found: float) -> float | None:
        q = plan_value / found
        if q < 1 / factor or (q > factor and sample_ohm is not None):
            return max(q, 1 / q)
        return None

    if plan_footprint_diameter_um is not None and plan_footprint_diameter_um > 0:
        q = off(plan_footprint_diameter_um, fp_um)
        if q is not None:
            warnings.append(
                f"the plan's footprint estimate ({plan_footprint_diameter_um:.3g} um across) "
                f"disagrees with the {fp_um:.3g} um the pipette's resistance implies (tip radius "
                f"{r_nm:.3g} nm x wetting ratio {wetting_ratio:.3g}) by a factor {q:.2g} "
                f"(limit {factor:g}): check the pitch against the real footprint"
            )
    if plan_tip_radius_nm is not None and plan_tip_radius_nm > 0:
        q = off(plan_tip_radius_nm, r_nm)
        if q is not None:
            warnings.append(
                f"the plan's pipette has a {plan_tip_radius_nm:.3g} nm tip radius but its "
                f"resistance says {r_nm:.3g} nm (a factor {q:.2g}, limit {factor:g})"
            )
    return ApertureFigures(
        tip_radius_nm=float(r_nm),
        tip_radius_err_nm=float(err_nm),
        pipette_ohm=float(r_pip),
        total_ohm=float(total_ohm),
        sample_ohm=float(sample),
        lower_bound=sample_ohm is None,
        footprint_diameter_um=float(fp_um),
        plan_footprint_diameter_um=plan_footprint_diameter_um,
        warnings=warnings,
    )
