"""The simulated SECCM against the physics of /work/shared/DOMAIN.md.

Expected values are computed here, from the formulas written out in this file
(not from ``napari_seccm.simulation.physics``), and compared with what
the instrument measures through UniMMCore. Only the spreading-ratio table uses
the simulated film directly (a property of the film, not of a measurement).

Unit conventions: the simulated hub (SECCM) takes S/cm, nm, uF/cm^2 and Ohm cm^2; the
formulas below work in SI.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

K_B = 1.380649e-23  # J/K (exact, SI 2019)
T_ROOM = 295.0  # K: the glovebox at ~22 C

# stripes along x; [001] where y mod PERIOD is in [0, PERIOD / 2)
PERIOD = 10.0
Y_001 = 2.5
Y_100 = -2.5


# ------------------------------------------------------------------ formulas
def ellipk(m: float) -> float:
    """Complete elliptic integral of the first kind, parameter m (= k^2), by AGM.

    K(m) = pi / (2 AGM(1, sqrt(1 - m))).
    """
    a, b = 1.0, math.sqrt(1.0 - m)
    for _ in range(40):  # quadratic convergence: far more than enough
        a, b = 0.5 * (a + b), math.sqrt(a * b)
    return math.pi / (2.0 * a)


def g_spreading(a: float, sx: float, sy: float, sz: float) -> float:
    """Disk of radius a on an anisotropic half-space (principal sigmas), S.

    Scale each axis by sqrt(sigma_i): the disk becomes an ellipse with semi-axes
    a / sqrt(sx), a / sqrt(sy) on a unit half-space, whose conductance is
    2 pi alpha / K(1 - beta^2 / alpha^2) (alpha >= beta); the flux picks up
    sqrt(sx sy sz). Isotropic limit: 4 sigma a (Holm).
    """
    alpha = a / math.sqrt(min(sx, sy))
    beta = a / math.sqrt(max(sx, sy))
    return math.sqrt(sx * sy * sz) * 2.0 * math.pi * alpha / ellipk(1 - (beta / alpha) ** 2)


def g_001(a: float, s_fast: float, s_slow: float) -> float:
    """[001] domain: fast in the plane, slow along the normal: 4 a sqrt(sf ss)."""
    return 4.0 * a * math.sqrt(s_fast * s_slow)


def g_100(a: float, s_fast: float, s_slow: float) -> float:
    """[100] domain: c axis in the plane: (x, y, z) = (fast, slow, fast)."""
    return g_spreading(a, s_fast, s_slow, s_fast)


def sample_params(core) -> dict[str, float]:
    """The sample's parameters, read from the simulated hub, in SI."""

    def g(prop: str) -> float:
        return core.getProperty("SECCM", prop)

    s_fast = g("SigmaFast_S_per_cm") * 100.0
    return {
        "r_tip": g("Pipette_TipRadius_nm") * 1e-9,
        "theta": math.radians(g("Pipette_HalfAngle_deg")),
        "rho": 1.0 / (g("Pipette_Electrolyte_S_per_cm") * 100.0),
        "a": g("Pipette_FootprintRadius_nm") * 1e-9,
        "s_fast": s_fast,
        "s_slow": s_fast / g("Anisotropy"),
        "s_film": g("SigmaFilm_S_per_cm") * 100.0,
        "t": g("Thickness_nm") * 1e-9,
        "asr": g("ASR_ohm_cm2") * 1e-4,
        "cdl": g("Cdl_uF_per_cm2") * 1e-2,
        "pad_x": g("PadEdgeX_um") * 1e-6,
    }


def r_total(p: dict[str, float], domain: str, x_um: float) -> float:
    """R_pip + R_ct + R_spreading + R_film of a landing at x, Ohm (DOMAIN.md)."""
    a = p["a"]
    r_pip = p["rho"] / (math.pi * p["r_tip"] * math.tan(p["theta"]))
    r_ct = p["asr"] / (math.pi * a**2)
    g = (g_001 if domain == "001" else g_100)(a, p["s_fast"], p["s_slow"])
    L = x_um * 1e-6 - p["pad_x"]
    r_film = math.log(L / a) / (2.0 * math.pi * p["s_film"] * p["t"])
    return r_pip + r_ct + 1.0 / g + r_film


def enbw(fc: float, fs: float) -> float:
    """Noise bandwidth of y[n] = a y[n-1] + (1 - a) x[n], a = exp(-2 pi fc / fs).

    White-noise power gain sum (1-a)^2 a^(2n) = (1 - a) / (1 + a); over the
    Nyquist band fs / 2 that is B = fs / 2 (1 - a) / (1 + a).
    """
    a = math.exp(-2.0 * math.pi * fc / fs)
    return fs / 2.0 * (1.0 - a) / (1.0 + a)


def johnson_rms(r_f: float, bandwidth: float, temp: float = T_ROOM) -> float:
    return math.sqrt(4.0 * K_B * temp * bandwidth / r_f)


def lsb(range_A: float) -> float:
    """16-bit converter over +-full scale."""
    return 2.0 * range_A / 2**16


# ------------------------------------------------------------------- helpers
def set_props(core, dev: str, **props) -> None:
    for name, value in props.items():
        core.setProperty(dev, name, value)


def ideal(core) -> None:
    """The idealized film and droplet (no landing scatter, drift, mains or 1/f
    noise): these tests compare single landings with the formulas."""
    from napari_seccm.devices.simulated import IDEAL_PROPERTIES

    set_props(core, "SECCM", **IDEAL_PROPERTIES)


def stripes(core, **extra) -> None:
    """Straight stripes along x (no jitter), [001] for y mod 10 um in [0, 5);
    the idealized film and droplet."""
    ideal(core)
    set_props(
        core,
        "SECCM",
        StripeAngle_deg=0.0,
        StripeJitter_um=0.0,
        StripeOffset_um=0.0,
        StripeFraction001=0.5,
        StripePeriod_um=PERIOD,
        # a back contact too large to charge: the Au pad acts as a plain short
        PadCapacitance_F=1.0,
        **extra,
    )


def acquire(core, waveform: str) -> np.ndarray:
    core.setProperty("Potentiostat", "Waveform", waveform)
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForSystem()
    return core.getProperty("Potentiostat", "LastTrace")


def hold_mean(core, volts: float = 1.0, t_s: float = 0.05) -> float:
    i = acquire(core, f'[{{"hold": {volts}, "t": {t_s}}}]')[2]
    return float(i[i.size // 4 :].mean())


def retract(core, gap_um: float = 2.0) -> None:
    """Lift well above the detach height: the droplet leaves."""
    core.setPosition(core.getProperty("SECCM", "SurfaceHeight_um") + gap_um)
    core.waitForSystem()


def land_at(core, lander, x: float, y: float, **kw) -> dict:
    retract(core)
    core.setXYPosition(x, y)
    core.waitForSystem()
    return lander(core, **kw)


def iv_fit(core) -> tuple[float, float, float]:
    """Ramp 0 -> 1 V (after a hold at 0 V); linear fit I = G E + I0.

    Returns (G, I0, residual rms).
    """
    tr = acquire(core, '[{"hold": 0.0, "t": 0.02}, {"ramp": [0.0, 1.0], "t": 0.5}]')
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    ramp = slice(round(0.02 * fs) + 5, None)  # skip the hold and the filter lag
    e, i = tr[1, ramp], tr[2, ramp]
    assert e.min() < 0.05 and e.max() > 0.95
    g, i0 = np.polyfit(e, i, 1)
    resid = i - (g * e + i0)
    return float(g), float(i0), float(resid.std())


# ------------------------------------------------------------------ I-V
@pytest.mark.parametrize(
    ("asr_ohm_cm2", "range_A"),
    [(0.0, 1e-8), (1.0, 1e-9), (10.0, 1e-10)],
)
@pytest.mark.parametrize("domain", ["100", "001"])
def test_iv_slope_is_one_over_r_total(core, lander, domain, asr_ohm_cm2, range_A):
    stripes(core, ASR_ohm_cm2=asr_ohm_cm2)
    core.setProperty("Potentiostat", "CurrentRange_A", range_A)
    y = Y_001 if domain == "001" else Y_100
    land_at(core, lander, 0.0, y)
    g, i0, resid = iv_fit(core)
    r = r_total(sample_params(core), domain, x_um=0.0)
    assert 1.0 / r < range_A  # on scale: the fit is meaningful
    assert g == pytest.approx(1.0 / r, rel=0.01)
    # through the origin: the offset is below 2 mV worth of current
    assert abs(i0) < 2e-3 * g
    assert resid < 1e-3 * g  # linear


def test_001_stripe_conducts_less_than_100(core, lander):
    stripes(core)
    land_at(core, lander, 0.0, Y_100)
    i_100 = hold_mean(core)
    land_at(core, lander, 0.0, Y_001)
    i_001 = hold_mean(core)
    p = sample_params(core)
    expected = r_total(p, "100", 0.0) / r_total(p, "001", 0.0)  # I001 / I100
    assert expected < 0.95
    assert i_001 / i_100 == pytest.approx(expected, rel=0.01)


def test_footprint_on_domain_edge_is_between(core, lander):
    stripes(core, Anisotropy=30.0)  # a strong contrast between the domains
    land_at(core, lander, 0.0, Y_100)
    i_100 = hold_mean(core)
    land_at(core, lander, 0.0, Y_001)
    i_001 = hold_mean(core)
    land_at(core, lander, 0.0, 0.0)  # the [100] | [001] edge at y = 0
    i_edge = hold_mean(core)
    gap = i_100 - i_001
    assert gap > 0.1 * i_100
    assert i_001 + 0.2 * gap < i_edge < i_100 - 0.2 * gap


# ------------------------------------------------------ spreading contrast
@pytest.mark.parametrize(
    ("anisotropy", "domain_md"), [(3.0, 1.3), (10.0, 1.9), (30.0, 2.8), (100.0, 4.3)]
)
def test_spreading_contrast(anisotropy, domain_md):
    """G[100] / G[001] of the spreading term (DOMAIN.md: ~1.3/1.9/2.8/4.3)."""
    from napari_seccm.simulation import FilmParameters, LLTOFilm

    film = LLTOFilm(
        FilmParameters(
            anisotropy=anisotropy,
            stripe_angle_deg=0.0,
            stripe_jitter_um=0.0,
            stripe_period_um=PERIOD,
            stripe_fraction_001=0.5,
        )
    )
    a_um = 0.1
    g = film.spreading_conductance(np.array([0.0, 0.0]), np.array([Y_100, Y_001]), a_um)
    ratio = g[0] / g[1]
    assert ratio == pytest.approx(domain_md, rel=0.05)
    s_fast = film.params.sigma_fast_S_per_cm * 100.0
    s_slow = s_fast / anisotropy
    a = a_um * 1e-6
    assert g[0] == pytest.approx(g_100(a, s_fast, s_slow), rel=1e-9)
    assert g[1] == pytest.approx(g_001(a, s_fast, s_slow), rel=1e-9)


def test_spreading_isotropic_is_holm():
    """Anisotropy 1: both orientations give Holm's 4 sigma a."""
    from napari_seccm.simulation import FilmParameters, LLTOFilm

    film = LLTOFilm(FilmParameters(anisotropy=1.0, stripe_jitter_um=0.0))
    g = film.spreading_conductance(np.array([0.0, 1.0, 2.0]), np.zeros(3), 0.2)
    sigma = film.params.sigma_fast_S_per_cm * 100.0
    assert np.allclose(g, 4 * sigma * 0.2e-6, rtol=1e-12)
    assert ellipk(0.0) == pytest.approx(math.pi / 2, rel=1e-15)


# ------------------------------------------------------------ landing spike
def test_landing_spike_charge(core, lander):
    """Q = C_dl pi a^2 dV: the charge above the steady baseline at landing."""
    # a 1 um footprint and an interface that sets RC ~ 25 ms (~130 samples),
    # well resolved at 5 kHz; a long confirmation keeps recording the decay
    stripes(core, Pipette_FootprintRadius_nm=1000.0, ASR_ohm_cm2=500.0)
    core.setProperty("SECCM", "Cdl_uF_per_cm2", 50.0)
    set_props(core, "Potentiostat", CurrentRange_A=1e-9, Filter_Hz=1000.0)
    core.setProperty("PiezoZ", "Approach_ConfirmSamples", 1000)
    speed = 0.25
    volts = 1.0
    core.setXYPosition(0.0, Y_100)
    core.waitForSystem()
    res = lander(core, potential_V=volts, speed_um_s=speed)
    tr = core.getProperty("PiezoZ", "Approach_Trace")
    p = sample_params(core)
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    fc = core.getProperty("Potentiostat", "Filter_Hz")
    dt = 1.0 / fs

    r = r_total(p, "100", 0.0)
    c = p["cdl"] * math.pi * p["a"] ** 2
    q_expected = c * volts
    n_after = tr.shape[1] - (res["start_z_um"] - res["contact_z_um"]) / speed * fs
    assert n_after * dt > 7 * r * c  # the decay is inside the trace (e^-7)
    assert r * c * fs > 20  # RC spans 20+ samples: well resolved

    # steady baseline: a hold at the same potential right after the approach
    baseline = hold_mean(core, volts, t_s=0.1)
    assert baseline == pytest.approx(volts / r, rel=0.01)

    # landing time from the trace: z(t) = z0 - speed t reaches surface + meniscus
    z_contact = res["surface_um"] + core.getProperty("SECCM", "Pipette_MeniscusHeight_um")
    t_land = (tr[1, 0] - z_contact) / speed
    t_end = tr[0, -1] + dt
    # sum of the filtered samples; the one-pole filter (a = exp(-2 pi fc/fs))
    # still holds a / (1 - a) samples' worth of its last output at the end
    a_f = math.exp(-2.0 * math.pi * fc / fs)
    charge = tr[2].sum() * dt + a_f / (1.0 - a_f) * tr[2, -1] * dt
    q_spike = charge - baseline * (t_end - t_land)
    assert q_spike == pytest.approx(q_expected, rel=0.05)


# -------------------------------------------------------------------- noise
@pytest.mark.parametrize(
    ("range_A", "fc", "fs", "n"),
    [
        (1e-10, 1000.0, 5000.0, 20_000),
        (1e-9, 1000.0, 5000.0, 20_000),
        (1e-8, 1000.0, 5000.0, 20_000),
        (1e-10, 1000.0, 100_000.0, 100_000),  # fc << fs: B ~ pi/2 fc
        (1e-9, 100.0, 5000.0, 50_000),
    ],
)
def test_noise_without_contact(core, range_A, fc, fs, n):
    """No contact: zero-mean Johnson noise of R_f = 10 V / range over the ENBW."""
    ideal(core)  # Johnson noise alone: no mains pickup
    set_props(core, "Potentiostat", CurrentRange_A=range_A, SampleRate_Hz=fs)
    set_props(core, "Potentiostat", Filter_Hz=fc, Cell="On", Potential_V=1.0)
    r_f = 10.0 / range_A
    b = enbw(fc, fs)
    sigma = johnson_rms(r_f, b)
    assert core.getProperty("Potentiostat", "NoiseRMS_A") == pytest.approx(sigma, rel=0.01)
    i = acquire(core, f'[{{"hold": 1.0, "t": {n / fs}}}]')[2]
    assert i.size == n
    i = i[50:]  # let the filter forget its start
    # the converter's rounding adds LSB^2 / 12 of variance
    expected_rms = math.sqrt(sigma**2 + lsb(range_A) ** 2 / 12)
    rms = float(np.sqrt(np.mean(i**2)))
    assert rms == pytest.approx(expected_rms, rel=0.10)
    # zero mean: the filter has unit DC gain, so the mean's standard error is
    # that of the white input, sigma sqrt((1 + a) / (1 - a)) / sqrt(N)
    a = math.exp(-2.0 * math.pi * fc / fs)
    se = sigma * math.sqrt((1 + a) / (1 - a)) / math.sqrt(i.size)
    assert abs(i.mean()) < 3 * se
    assert np.abs(i).max() < 8 * expected_rms  # nothing but Gaussian noise


def test_noise_formula_figures():
    """DOMAIN.md: 0.13 pA rms at 1 GOhm / 1 kHz, 0.04 pA at 10 GOhm."""
    assert johnson_rms(1e9, 1000.0) == pytest.approx(0.13e-12, abs=0.005e-12)
    assert johnson_rms(1e10, 1000.0) == pytest.approx(0.04e-12, abs=0.005e-12)
    # the one-pole filter's ENBW tends to pi/2 fc when fc << fs, not when fc ~ fs
    assert enbw(1000.0, 100_000.0) == pytest.approx(math.pi / 2 * 1000.0, rel=1e-3)
    assert enbw(1000.0, 5000.0) < 0.9 * math.pi / 2 * 1000.0


# -------------------------------------------------------------------- clock
def test_clock_waveform_and_approach(core):
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    t0 = core.getProperty("SECCM", "InstrumentTime_s")
    acquire(core, '[{"hold": 0.5, "t": 0.3}, {"ramp": [0.5, 0.0], "t": 0.1}]')
    assert core.getProperty("SECCM", "InstrumentTime_s") - t0 == pytest.approx(0.4, rel=1e-9)
    # an approach that misses runs the whole way at the approach speed
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    speed = 0.5
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", speed)
    core.setPosition(surface + 3.0)
    core.waitForSystem()
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface + 1.0)
    t0 = core.getProperty("SECCM", "InstrumentTime_s")
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    dt = core.getProperty("SECCM", "InstrumentTime_s") - t0
    assert core.getProperty("PiezoZ", "Approach_Result") == "no contact"
    assert 2.0 / speed <= dt <= 2.0 / speed + 2 / fs


# -------------------------------------------------------------- determinism
def _run(core) -> tuple[np.ndarray, np.ndarray]:
    # the random noise alone: no mains pickup (a sine that both runs share)
    core.setProperty("SECCM", "MainsPickup_A", 0.0)
    set_props(core, "Potentiostat", Cell="On", Potential_V=1.0)
    noise = acquire(core, '[{"hold": 1.0, "t": 0.2}]').copy()
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    core.setPosition(surface + 0.5)
    core.waitForSystem()
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface - 0.02)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    return noise, core.getProperty("PiezoZ", "Approach_Trace").copy()


def test_same_seed_same_traces_other_seed_other_noise(make_core):
    runs = {}
    for key, seed in (("a", 7), ("b", 7), ("c", 8)):
        core = make_core(seed=seed)
        runs[key] = _run(core)
        core.unloadAllDevices()
    (na, aa), (nb, ab), (nc, ac) = runs["a"], runs["b"], runs["c"]
    assert np.array_equal(na, nb)
    assert np.array_equal(aa, ab)
    assert np.array_equal(na[:2], nc[:2])  # same time base and potential
    assert not np.array_equal(na[2], nc[2])
    r = np.corrcoef(na[2], nc[2])[0, 1]
    assert abs(r) < 0.1  # independent noise
    # the film (its own seed) is the same: the landing happens at the same Z
    assert aa.shape == ac.shape
    assert np.array_equal(aa[1], ac[1])


# ------------------------------------------------------------------ timing
def test_trace_generation_time(landed_core, capsys):
    """Measure (not assert) the time to generate a 10^4-sample trace in contact."""
    core = landed_core
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    core.setProperty("Potentiostat", "Waveform", f'[{{"hold": 1.0, "t": {1e4 / fs}}}]')
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        core.setProperty("Potentiostat", "Acquire", "Run")
        core.waitForSystem()
    per_trace = (time.perf_counter() - t) / reps
    tr = core.getProperty("Potentiostat", "LastTrace")
    assert tr.shape == (3, 10_000)
    assert np.all(tr[2] > 0)  # in contact at 1 V
    with capsys.disabled():
        print(
            f"\n[timing] 10^4-sample trace in contact: {per_trace * 1e3:.2f} ms "
            f"({per_trace / 1e4 * 1e9:.0f} ns/sample) via Acquire=Run"
        )
