"""Preflight: the noise, threshold, capacitance and aperture figures against
the simulated rig's truth (its settings), the pure formulas against
simulated noise, the CLI, the Rig's Preflight group, and refusals."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_seccm.acquisition.plan import ScanPlan
from napari_seccm.acquisition.preflight import record_landing, record_noise, run_preflight
from napari_seccm.analysis.preflight import (
    aperture_from_resistance,
    false_trigger_probability,
    false_trigger_rate,
    noise_figures,
    settle_samples,
    step_capacitance,
    suggest_threshold,
)
from napari_seccm.devices.simulated import IDEAL_PROPERTIES, simulated_rig
from napari_seccm.model.detect import contact_fired

SLOW = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _plan(**pst) -> ScanPlan:
    data = ScanPlan().model_dump()
    data["potentiostat"].update(pst)
    return ScanPlan.model_validate(data)


@contextlib.contextmanager
def fresh_core(make_core, seed):
    """A core for one hypothesis example, unloaded at its end (one simulated
    hub at a time)."""
    core = make_core(seed=seed)
    try:
        yield core
    finally:
        core.unloadAllDevices()


def _ideal(core, keep_mains: bool = False) -> None:
    for k, v in IDEAL_PROPERTIES.items():
        if keep_mains and k == "MainsPickup_A":
            continue
        core.setProperty("SECCM", k, v)


# ------------------------------------------------------------------ noise
@SLOW
@given(
    seed=st.integers(0, 2**31 - 1),
    range_A=st.sampled_from([1e-9, 1e-8]),
    filter_Hz=st.sampled_from([300.0, 1000.0, 2000.0]),
    mains_A=st.sampled_from([0.0, 1e-12, 4e-12]),
)
def test_noise_matches_the_simulated_amplifier(make_core, seed, range_A, filter_Hz, mains_A):
    """Broadband rms = the amplifier's Johnson noise (sqrt(4kT ENBW / R_f))
    with the converter's quantization (LSB^2 / 12) within 8 %; the mains line's
    amplitude within 8 % (or no line when there is none)."""
    with fresh_core(make_core, seed) as core:
        core.setProperty("SECCM", "MainsPickup_A", mains_A)
        plan = _plan(current_range_A=range_A, filter_Hz=filter_Hz)
        tr = record_noise(core, plan, noise_s=1.0)
        amp = simulated_rig().probe().amplifier
    pst = plan.potentiostat
    n = noise_figures(
        tr[2, settle_samples(pst.filter_Hz, pst.sample_rate_Hz) :], pst.sample_rate_Hz
    )
    lsb = 2 * amp.range_A / 2**amp.bits
    # the converter adds at most LSB^2 / 12 (less when the noise is below an LSB)
    lo, hi = amp.noise_rms_A, math.sqrt(amp.noise_rms_A**2 + lsb**2 / 12)
    tol = 3 * n.sigma_err_A
    assert 0.92 * lo - tol <= n.sigma_A <= 1.08 * hi + tol, (n.sigma_A, lo, hi)
    big = [li for li in n.lines if li.amplitude_A > 0.3 * mains_A] if mains_A else n.lines
    if mains_A:
        assert [li.frequency_Hz for li in big] == [50.0]
        assert abs(big[0].amplitude_A - mains_A) <= 0.08 * mains_A
    else:
        assert big == []
    # the spectrum is the one-pole's: flat below the cut-off, 1/f^2 above
    f, p = n.psd_f_Hz, n.psd_A2_per_Hz
    low = np.median(p[(f > 5) & (f < filter_Hz / 5) & (np.abs(f - 50) > 5)])
    assert low == pytest.approx(2 * amp.noise_rms_A**2 / amp.enbw_hz, rel=0.3)


def test_noise_below_the_converter_step_is_said(core):
    """At the 100 nA range a 16-bit converter's step (3 pA) is ten times the
    Johnson noise: the record is quantized to a few levels, and the report
    says its figures are the converter's."""
    core.setProperty("SECCM", "MainsPickup_A", 0.0)
    report = run_preflight(core, _plan(current_range_A=1e-7), noise_s=0.3, landing=False)
    assert any("converter's resolution" in w and "1e-07 A" in w for w in report.warnings)


def _one_pole_noise(n: int, rho: float, sigma: float, seed: int) -> np.ndarray:
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    x = lfilter([1 - rho], [1, -rho], rng.normal(size=n))
    return x / x.std() * sigma


@settings(max_examples=8, deadline=None)
@given(rho=st.floats(0.0, 0.8), seed=st.integers(0, 10_000))
def test_rice_rate_bounds_the_detector_and_is_close_without_confirm(rho, seed):
    """On Gaussian noise of known correlation: the detector (no confirm
    samples) fires no more often than the Rice rate allows, and not far less
    (the formula is the upcrossing rate, within 40 % at 3 sigma); with confirm
    samples it fires less still (the bound is not credited with them)."""
    fs, sigma = 5000.0, 1e-13
    x = _one_pole_noise(1_000_000, rho, sigma, seed)
    nf = noise_figures(x[:50_000], fs)
    thr = 3 * sigma
    predicted = false_trigger_rate(thr, nf, "absolute")  # per s
    for confirm in (0, 3):
        fired = contact_fired(x, thr, "absolute", 50)
        run = confirm + 1
        win = np.lib.stride_tricks.sliding_window_view(fired, run).all(axis=1)
        starts = int((win & ~np.concatenate(([False], win[:-1]))).sum())
        observed = starts / (x.size / fs)
        assert observed <= predicted * 1.25 + 5 / (x.size / fs), (confirm, observed, predicted)
        if confirm == 0:
            assert observed >= 0.5 * predicted, (observed, predicted)


def test_suggested_threshold_is_the_lowest_that_meets_the_target():
    fs, sigma = 5000.0, 2e-13
    t = np.arange(20_000) / fs
    x = _one_pole_noise(t.size, 0.3, sigma, 1) + 1e-12 * np.sin(2 * np.pi * 50 * t + 0.3)
    nf = noise_figures(x, fs)
    assert [li.frequency_Hz for li in nf.lines] == [50.0]
    for mode in ("absolute", "rise", "either"):
        sug = suggest_threshold(nf, 0.3, mode=mode, target_per_approach=1e-3, samples=x)
        p = false_trigger_probability(sug.threshold_A, nf, 0.3, mode)
        assert p <= 1e-3 * (1 + 1e-6)
        assert false_trigger_probability(0.97 * sug.threshold_A, nf, 0.3, mode) > 1e-3
        assert sug.threshold_A > nf.lines_amplitude_A  # the line alone never fires it
        assert sug.fired_on_record == 0
    # a stricter target needs a higher threshold
    a = suggest_threshold(nf, 0.3, target_per_approach=1e-2).threshold_A
    b = suggest_threshold(nf, 0.3, target_per_approach=1e-6).threshold_A
    assert b > a


# ----------------------------------------------------- landing: C and R
@SLOW
@given(seed=st.integers(0, 2**31 - 1), cdl=st.sampled_from([5.0, 10.0, 40.0]))
def test_capacitance_and_resistance_at_the_landing_match_the_simulator(make_core, seed, cdl):
    """C = C_dl pi a^2 (the simulator's double layer under the footprint)
    within 4 standard errors + 10 %; R = the series model's sum within 3 %."""
    with fresh_core(make_core, seed) as core:
        _ideal(core)
        core.setProperty("SECCM", "Cdl_uF_per_cm2", cdl)
        rig = simulated_rig()
        plan = ScanPlan()
        land = record_landing(core, plan, step_V=0.2, n_steps=10)
        p = rig.probe()
        a = p.pipette.effective(p.state)[1]
        c_true = cdl * 1e-2 * math.pi * a**2
        r_true = sum(rig.resistance_terms(rig.x_um, rig.y_um, p).values())
        # the probe was lifted off: no droplet, above the contact by the retract
        assert p.contact is None
        assert core.getPosition() == pytest.approx(land.contact_z_um + plan.retract_um, abs=0.01)
    fig = step_capacitance(*land.trace, filter_Hz=plan.potentiostat.filter_Hz)
    assert fig.n_steps == 20
    assert abs(fig.capacitance_F - c_true) <= 4 * fig.capacitance_err_F + 0.1 * c_true, (
        fig.capacitance_F,
        fig.capacitance_err_F,
        c_true,
    )
    assert fig.resistance_ohm == pytest.approx(r_true, rel=0.03)


@SLOW
@given(
    tip_nm=st.floats(20.0, 200.0),
    half_angle=st.floats(3.0, 12.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_aperture_from_the_first_landing_matches_the_tip(make_core, tip_nm, half_angle, seed):
    """On a film that conducts well (the sample's terms are < 1 % of the
    pipette's), the tip radius from the landing's resistance is the
    simulated pipette's within 5 %."""
    with fresh_core(make_core, seed) as core:
        report = _landing_on_a_good_conductor(core, tip_nm, half_angle)
    ap = report.aperture
    assert ap is not None and ap.lower_bound
    assert ap.tip_radius_nm == pytest.approx(tip_nm, rel=0.05)


def _landing_on_a_good_conductor(core, tip_nm, half_angle):
    _ideal(core)
    for prop, v in (
        ("SigmaFast_S_per_cm", 1.0),
        ("Anisotropy", 1.0),
        ("SigmaFilm_S_per_cm", 1.0),
        ("ASR_ohm_cm2", 0.0),
        ("Pipette_TipRadius_nm", tip_nm),
        ("Pipette_FootprintRadius_nm", 1.5 * tip_nm),
        ("Pipette_HalfAngle_deg", half_angle),
    ):
        core.setProperty("SECCM", prop, v)
    data = ScanPlan().model_dump()
    data["potentiostat"]["current_range_A"] = 1e-7
    data["pipette"].update(half_angle_deg=half_angle, tip_radius_nm=tip_nm)
    data["approach"]["potential_V"] = 0.5
    plan = ScanPlan.model_validate(data)
    return run_preflight(core, plan, noise_s=0.2, step_V=0.1)


def test_aperture_on_a_resistive_film_is_a_lower_bound_and_says_so(core):
    _ideal(core)
    report = run_preflight(core, ScanPlan(), noise_s=0.2)
    ap = report.aperture
    assert ap is not None and ap.lower_bound
    assert ap.tip_radius_nm < 50.0  # the true radius
    assert any("lower bound" in w for w in report.warnings)
    # with the sample's terms subtracted (the simulator's truth here), the tip
    rig = simulated_rig()
    terms = rig.resistance_terms(rig.x_um, rig.y_um, rig.probe())
    sample = terms["interface_ohm"] + terms["spreading_ohm"] + terms["film_ohm"]
    exact = aperture_from_resistance(
        report.steps.resistance_ohm,
        report.steps.resistance_err_ohm,
        half_angle_deg=5.0,
        electrolyte_S_per_cm=1e-2,
        sample_ohm=sample,
    )
    assert exact.tip_radius_nm == pytest.approx(50.0, rel=0.05)


def test_footprint_warning_names_both_estimates_and_the_factor():
    # 73 MOhm is a 50 nm tip at 5 deg in 1e-2 S/cm: a 0.15 um footprint (ratio 1.5)
    kw = {"half_angle_deg": 5.0, "electrolyte_S_per_cm": 1e-2, "sample_ohm": 0.0}
    ok = aperture_from_resistance(72.77e6, 1e5, plan_footprint_diameter_um=0.15, **kw)
    assert ok.tip_radius_nm == pytest.approx(50.0, rel=1e-3)
    assert ok.warnings == []
    off = aperture_from_resistance(72.77e6, 1e5, plan_footprint_diameter_um=0.5, **kw)
    assert len(off.warnings) == 1
    w = off.warnings[0]
    assert "0.5 um" in w and "0.15 um" in w and "factor 3.3" in w and "limit 2" in w


# ------------------------------------------------------------ bad input
def test_bad_samples_are_refused_with_the_value_and_field():
    x = np.zeros(1000)
    x[17] = np.nan
    with pytest.raises(ValueError, match="sample 17 is nan A"):
        noise_figures(x, 5000.0)
    with pytest.raises(ValueError, match="at least 64 samples"):
        noise_figures(np.zeros(10), 5000.0)
    with pytest.raises(ValueError, match="sample rate -1"):
        noise_figures(np.zeros(100), -1)
    t = np.arange(100) / 5000
    with pytest.raises(ValueError, match="no potential step"):
        step_capacitance(t, np.ones(100), np.zeros(100), filter_Hz=1000)
    with pytest.raises(ValueError, match="no pipette term is left"):
        aperture_from_resistance(
            1e8, 1e5, half_angle_deg=5, electrolyte_S_per_cm=1e-2, sample_ohm=2e8
        )


def test_bad_preflight_settings_change_nothing(core):
    z0 = core.getPosition()
    cell = core.getProperty("Potentiostat", "Cell")
    for kw, match in (
        ({"noise_s": 1000.0}, r"noise record 1000.0 s is outside \[0.05, 60\] s"),
        ({"step_V": 5.0, "noise_s": 0.1}, r"potential step 5.0 V is outside \[0.001, 1\] V"),
    ):
        with pytest.raises(ValueError, match=match):
            run_preflight(core, ScanPlan(), **kw)
        assert core.getPosition() == z0
        assert core.getProperty("Potentiostat", "Cell") == cell


# ------------------------------------------------------------------- CLI
def test_cli_preflight_prints_every_figure_with_units(capsys):
    from napari_seccm.cli import main

    assert main(["preflight", "--noise-s", "0.5"]) == 0
    out = capsys.readouterr().out
    for key, unit in (
        ("noise (in air)", "A rms"),
        ("mains lines", "50 Hz"),
        ("threshold", "false triggers per approach"),
        ("capacitance", "F +-"),
        ("resistance", "Ohm +-"),
        ("aperture", "nm"),
    ):
        line = next(li for li in out.splitlines() if li.startswith(key))
        assert unit in line, line


def test_cli_preflight_json_and_noise_only(capsys):
    from napari_seccm.cli import main

    assert main(["preflight", "--noise-s", "0.3", "--no-landing", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{") :])
    assert data["steps"] is None and data["aperture"] is None
    assert 0 < data["noise"]["sigma_A"] < 1e-12
    assert data["threshold"]["threshold_A"] > data["noise"]["sigma_A"]
    assert data["threshold"]["per_approach"] <= 1e-3


def test_cli_preflight_bad_flag_names_the_limit(capsys):
    from napari_seccm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["preflight", "--noise-s", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--noise-s" in err and "0.05" in err and "60" in err


# ------------------------------------------------------------- the Rig
@pytest.mark.gui
def test_rig_preflight_group_shows_the_figures(make_napari_viewer, qtbot):
    from napari_seccm.configs import SIMULATED, config_dir

    viewer = make_napari_viewer(show=False)
    _, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    _, sw = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan")
    rig.config_edit.setText(str(config_dir() / SIMULATED))
    rig._load()
    core = rig.session.core
    try:
        assert not rig.pf_use_btn.isEnabled()  # nothing suggested yet
        rig.pf_noise_spin.setValue(0.3)
        rig.depth_spin.setValue(40.0)
        rig.pf_landing.setChecked(True)
        # at 0 V (the potentiostat's value after loading) the landing is refused
        rig.pf_btn.click()
        qtbot.waitUntil(lambda: not rig._busy, timeout=30_000)
        assert "refused" in rig.status.text() and "0 V" in rig.status.text()
        assert core.getPosition() == pytest.approx(z0_first := core.getPosition())
        rig.pot_spin.setValue(1.0)
        z0 = core.getPosition()
        assert z0 == z0_first
        rig.pf_btn.click()
        qtbot.waitUntil(lambda: not rig._busy, timeout=30_000)
        text = rig.pf_result.text()
        assert text, rig.status.text()
        assert "noise (in air)" in text and "capacitance" in text and "aperture" in text
        assert "suggested threshold" in rig.status.text() and "pA" in rig.status.text()
        rep = rig.preflight_report
        assert rep.threshold.threshold_A > 0 and rep.steps is not None
        # landed below where it started, then lifted by the Rig's retract
        assert core.getPosition() < z0
        assert core.getPosition() == pytest.approx(
            rep.contact_z_um + rig.retract_spin.value(), abs=0.01
        )
        # the suggested threshold taken for the Rig's approach and the Scan's plan
        assert rig.pf_use_btn.isEnabled()
        rig.pf_use_btn.click()
        want_pA = rep.threshold.threshold_A * 1e12
        assert rig.thr_spin.value() == pytest.approx(want_pA, abs=0.006)
        assert sw.threshold.value() == pytest.approx(want_pA, abs=0.006)
        assert sw.plan().approach.threshold_A == pytest.approx(want_pA * 1e-12, abs=6e-15)
    finally:
        core.unloadAllDevices()
