"""The realistic simulated film and droplet: each effect's statistics.

Landing-to-landing footprint scatter, partial wetting, late landings and
misses, residue, evaporation, thermal drift, mains pickup and 1/f noise, grain
boundaries with their geometry (between the landing and the pad / inside the
spreading volume), the film's own seed, domains of several widths and films of
grains only. Each test switches on the one effect it checks on an otherwise
idealized film (``IDEAL_PROPERTIES``), and compares with the formulas of
DOMAIN.md written out in ``test_physics``; expected scatters are checked within
their sampling error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_physics import r_total, sample_params, set_props

from napari_seccm.devices.simulated import IDEAL_PROPERTIES
from napari_seccm.simulation import FilmParameters, LLTOFilm, SimulatedRig
from napari_seccm.simulation.rig import ResidueSpots

#: a uniform film: no domains, no grains; the Au pad never charges
UNIFORM = {"StripePeriod_um": 0.0, "GrainSize_um": 0.0, "PadCapacitance_F": 1.0}


def ideal_uniform(core, **effect) -> None:
    set_props(core, "SECCM", **{**IDEAL_PROPERTIES, **UNIFORM, **effect})


def hold_mean(core, volts: float = 1.0, t_s: float = 0.02) -> float:
    core.setProperty("Potentiostat", "Waveform", f'[{{"hold": {volts}, "t": {t_s}}}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForSystem()
    i = core.getProperty("Potentiostat", "LastTrace")[2]
    return float(i[i.size // 4 :].mean())


def land(core, x: float, y: float, stop_below_um: float | None = None) -> dict:
    """Retract, move to (x, y), approach from 1 um above (cell on at 1 V)."""
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    core.setPosition(surface + 2.0)
    core.waitForSystem()
    core.setXYPosition(x, y)
    core.waitForSystem()
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    core.setPosition(surface + 1.0)
    core.waitForSystem()
    crash = core.getProperty("SECCM", "Pipette_CrashDepth_um")
    stop = surface - (crash / 2 if stop_below_um is None else stop_below_um)
    core.setProperty("PiezoZ", "Approach_StopZ_um", stop)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    return {
        "result": core.getProperty("PiezoZ", "Approach_Result"),
        "contact_z_um": core.getProperty("PiezoZ", "Approach_ContactZ_um"),
        "surface_um": surface,
    }


def footprint_from_resistance(p: dict, r_ohm: np.ndarray) -> np.ndarray:
    """Invert R_total(a) of a [100] landing at x = 0 (DOMAIN.md series model)."""
    a = np.geomspace(0.2, 5.0, 4000) * p["a"]
    r = np.array([r_total({**p, "a": ai}, "100", 0.0) for ai in a])  # decreasing in a
    return np.interp(r_ohm, r[::-1], a[::-1])


# ------------------------------------------------------- footprint scatter
def test_footprint_scatter_of_many_landings_matches_the_set_sigma(core):
    sigma = 0.08
    ideal_uniform(core, Pipette_FootprintScatter=sigma)
    p = sample_params(core)
    n = 300
    currents = []
    for k in range(n):
        assert land(core, 0.0, -30.0 + 0.2 * k)["result"] == "contact"
        currents.append(hold_mean(core))
    r = 1.0 / np.asarray(currents)  # 1 V
    a = footprint_from_resistance(p, r)
    ln_a = np.log(a / p["a"])
    se_sd = sigma / math.sqrt(2 * (n - 1))
    assert ln_a.std(ddof=1) == pytest.approx(sigma, abs=3 * se_sd)
    assert abs(ln_a.mean()) < 3 * sigma / math.sqrt(n)  # median = the nominal footprint
    # and the map values scatter as the series model says they should
    z = np.random.default_rng(0).standard_normal(20_000)
    i_pred = 1.0 / np.array(
        [r_total({**p, "a": p["a"] * math.exp(sigma * zi)}, "100", 0.0) for zi in z[:2000]]
    )
    rel_pred = i_pred.std() / i_pred.mean()
    rel = np.std(currents, ddof=1) / np.mean(currents)
    assert rel == pytest.approx(rel_pred, rel=3 / math.sqrt(2 * (n - 1)) + 0.05)


def test_scatter_zero_gives_identical_landings(core):
    ideal_uniform(core)
    i = [land(core, 0.0, y) and hold_mean(core) for y in (-10.0, -5.0, 0.0, 5.0, 10.0)]
    assert np.ptp(i) < 1e-3 * np.mean(i)


# ------------------------------------------- partial wetting, late, missed
def test_partial_wetting_and_late_landings_come_at_their_rates(core):
    prob_partial, prob_late, lo = 0.3, 0.25, 0.5
    ideal_uniform(
        core,
        Pipette_PartialWettingProbability=prob_partial,
        Pipette_PartialWettingMinFactor=lo,
        Pipette_LateLandingProbability=prob_late,
    )
    p = sample_params(core)
    meniscus = core.getProperty("SECCM", "Pipette_MeniscusHeight_um")
    speed = core.getProperty("PiezoZ", "Approach_Speed_um_per_s")
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    i_full = 1.0 / r_total(p, "100", 0.0)
    n = 250
    factors, gaps = [], []
    for k in range(n):
        res = land(core, 0.0, -30.0 + 0.25 * k)
        assert res["result"] == "contact"  # late, never missed
        gaps.append(res["contact_z_um"] - res["surface_um"])
        factors.append(footprint_from_resistance(p, np.array([1.0 / hold_mean(core)]))[0] / p["a"])
    factors, gaps = np.asarray(factors), np.asarray(gaps)
    partial = factors < 0.999
    late = gaps < meniscus - 1e-6
    # binomial counts within 3.5 standard deviations
    for hits, prob in ((partial, prob_partial), (late, prob_late)):
        assert abs(hits.sum() - prob * n) < 3.5 * math.sqrt(n * prob * (1 - prob))
    # a full footprint reads exactly the series model; a partial one lies in [lo, 1)
    assert np.allclose(factors[~partial], 1.0, atol=1e-3)
    assert factors[partial].min() >= lo - 1e-3
    # a normal landing is detected within one sample of the meniscus height;
    # late ones spread uniformly below it (mean half a meniscus height)
    assert np.all(np.abs(gaps[~late] - meniscus) <= speed / fs + 1e-9)
    g = gaps[late]
    assert g.min() >= -1e-9
    assert g.mean() == pytest.approx(meniscus / 2, abs=3.5 * meniscus / math.sqrt(12 * g.size))
    assert 1.0 / i_full > 0


def test_a_missed_landing_makes_no_contact_and_the_next_try_lands(core):
    ideal_uniform(core, Pipette_MissProbability=1.0)
    res = land(core, 0.0, 0.0)  # stops crash depth / 2 below the surface: the tip survives
    assert res["result"] == "no contact"
    assert core.getProperty("SECCM", "Pipette_State") == "ok"
    core.setProperty("SECCM", "Pipette_MissProbability", 0.0)
    assert land(core, 0.0, 0.0)["result"] == "contact"
    # a miss that goes on deeper than the crash depth breaks the pipette
    core.setProperty("SECCM", "Pipette_MissProbability", 1.0)
    res = land(core, 2.0, 0.0, stop_below_um=0.2)
    assert res["result"] == "no contact"
    assert core.getProperty("SECCM", "Pipette_State") == "broken"


# ------------------------------------------------------------------ residue
def test_a_landing_on_old_residue_wets_wider(core):
    gain = 0.1
    ideal_uniform(core, Pipette_ResidueWettingGain=gain)
    p = sample_params(core)
    land(core, 0.0, 0.0)
    i_fresh = hold_mean(core)
    assert i_fresh == pytest.approx(1.0 / r_total(p, "100", 0.0), rel=1e-3)
    land(core, 0.0, 0.0)  # the same spot: the whole footprint on residue
    i_again = hold_mean(core)
    expected = 1.0 / r_total({**p, "a": p["a"] * (1 + gain)}, "100", 0.0)
    assert i_again == pytest.approx(expected, rel=1e-3)
    assert i_again > 1.01 * i_fresh  # modestly more current
    land(core, 0.0, 1.0)  # a clean spot 1 um away
    assert hold_mean(core) == pytest.approx(i_fresh, rel=1e-3)
    # half a footprint radius off the old spot: a partial overlap, in between
    land(core, 0.0, 1.0 + p["a"] * 1e6 * 0.5)
    assert i_fresh * 1.001 < hold_mean(core) < i_again


def test_residue_spots_index_agrees_with_brute_force():
    rng = np.random.default_rng(3)
    spots = ResidueSpots(maxlen=500)
    for x, y, r in zip(
        rng.uniform(-5, 5, 2000),
        rng.uniform(-5, 5, 2000),
        rng.uniform(0.05, 0.4, 2000),
        strict=True,
    ):
        spots.append((float(x), float(y), float(r)))
    assert len(spots) == 500
    kept = np.asarray(list(spots))
    for x, y, r in zip(
        rng.uniform(-5, 5, 200), rng.uniform(-5, 5, 200), rng.uniform(0.05, 0.3, 200), strict=True
    ):
        # brute force: the largest covered fraction, by sampling the disk
        t = np.linspace(0, 1, 60)
        rr, th = np.meshgrid(np.sqrt(t) * r, np.linspace(0, 2 * np.pi, 120, endpoint=False))
        px, py = x + rr.ravel() * np.cos(th.ravel()), y + rr.ravel() * np.sin(th.ravel())
        d2 = (px[:, None] - kept[:, 0]) ** 2 + (py[:, None] - kept[:, 1]) ** 2
        brute = float(np.max((d2 <= kept[:, 2] ** 2).mean(axis=0)))
        assert spots.covered_fraction(x, y, r) == pytest.approx(brute, abs=0.03)


# -------------------------------------------------------------- evaporation
def test_evaporation_raises_the_pipette_term_over_hours(core):
    from napari_seccm.devices.simulated import simulated_rig

    rate = 0.03
    ideal_uniform(core, Pipette_Evaporation_per_h=rate)
    p = sample_params(core)
    r_pip = p["rho"] / (math.pi * p["r_tip"] * math.tan(p["theta"]))
    land(core, 0.0, 0.0)
    t0 = core.getProperty("SECCM", "InstrumentTime_s")
    r0 = 1.0 / hold_mean(core)
    assert r0 == pytest.approx(r_total(p, "100", 0.0), rel=1e-3)  # a fresh pipette
    simulated_rig().idle(3 * 3600.0)
    land(core, 0.0, 2.0)
    hours = (core.getProperty("SECCM", "InstrumentTime_s") - t0) / 3600
    r1 = 1.0 / hold_mean(core)
    assert r1 - r0 == pytest.approx(r_pip * rate * hours, rel=0.01)
    # a new pipette starts afresh
    core.setProperty("SECCM", "Pipette_State", "ok")
    land(core, 0.0, 4.0)
    assert 1.0 / hold_mean(core) == pytest.approx(r0, rel=1e-3)


# -------------------------------------------------------------------- drift
def test_thermal_drift_over_hours(core):
    from napari_seccm.devices.simulated import simulated_rig

    dz, dx = 40.0, 2500.0  # nm/h
    # stripes along y, period 10 um: [001] for x in (-5, 0] mod 10 (across = -x)
    props = {
        **IDEAL_PROPERTIES,
        "PadCapacitance_F": 1.0,
        "StripeAngle_deg": 90.0,
        "StripeJitter_um": 0.0,
        "StripeOffset_um": 0.0,
        "StripeFraction001": 0.5,
        "StripePeriod_um": 10.0,
        "DriftZ_nm_per_h": dz,
        "DriftX_nm_per_h": dx,
        # a flat, level film: the height changes by the drift alone
        "TiltX_um_per_um": 0.0,
        "TiltY_um_per_um": 0.0,
        "Roughness_nm": 0.0,
    }
    set_props(core, "SECCM", **props)
    rig = simulated_rig()
    land(core, -2.0, 0.0)
    i_001 = hold_mean(core)
    z0 = land(core, 0.0, 0.0)["contact_z_um"]
    s0 = core.getProperty("SECCM", "SurfaceHeight_um")
    t0 = core.getProperty("SECCM", "InstrumentTime_s")
    x0 = float(rig.drift_um[0])
    rig.idle(2 * 3600.0)  # the sample moves 5 um along +x and rises 80 nm
    res = land(core, 0.0, 0.0)
    hours = (core.getProperty("SECCM", "InstrumentTime_s") - t0) / 3600
    assert core.getProperty("SECCM", "SurfaceHeight_um") - s0 == pytest.approx(
        dz * 1e-3 * hours, rel=1e-6
    )
    # the approach finds the risen surface: the contact height follows it
    speed = core.getProperty("PiezoZ", "Approach_Speed_um_per_s")
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    assert res["contact_z_um"] - z0 == pytest.approx(dz * 1e-3 * hours, abs=2 * speed / fs)
    # stage x = 0 now shows the film 5 um to the left (-5 um: [100] -> [001] 2 um
    # later: landing at stage x = 3 shows film x = -2, the [001] stripe seen before)
    land(core, 3.0, 0.0)
    assert hold_mean(core) == pytest.approx(i_001, rel=1e-3)
    hours = (core.getProperty("SECCM", "InstrumentTime_s") - t0) / 3600
    assert rig.drift_um[0] - x0 == pytest.approx(dx * 1e-3 * hours, rel=1e-9)


def test_default_drift_is_tens_of_nm_per_hour(core):
    drift = [core.getProperty("SECCM", f"Drift{a}_nm_per_h") for a in "XYZ"]
    assert all(5.0 <= abs(v) <= 100.0 for v in drift)


# ----------------------------------------------------------- mains and 1/f
def _first_landing(seed: int, mains_A: float | None = None) -> str:
    """The first landing of an experiment with the engine's defaults: a search
    from 30 um above at 5 um/s, 3 pA absolute threshold, 3 confirm samples."""
    rig = SimulatedRig(seed=seed)
    probe = rig.probe()
    if mains_A is not None:
        probe.amplifier.mains_A = mains_A
    surface = rig.surface_um(0.0, 0.0)
    probe.z_um = surface + 30.0
    probe.cell_on, probe.potential_V = True, 1.0
    res = rig.approach(surface - 0.025, 5.0, 3e-12, "absolute", 3)
    if res.reason == "contact":
        meniscus = probe.pipette.meniscus_height_um
        assert res.contact_z_um <= surface + meniscus + 5.0 / 5000 + 1e-9
    return res.reason


def test_default_mains_pickup_never_false_triggers_the_first_landing():
    reasons = [_first_landing(seed) for seed in range(300)]
    assert reasons.count("false trigger") == 0
    assert reasons.count("contact") == 300
    # the test can see a false trigger: mains above the threshold fires at once
    assert {_first_landing(seed, mains_A=5e-12) for seed in range(5)} == {"false trigger"}


def test_default_noise_is_realistic(core):
    assert core.getProperty("SECCM", "MainsPickup_A") == pytest.approx(1e-12)
    assert core.getProperty("SECCM", "FlickerNoise_RelRMS") == pytest.approx(0.01)
    assert core.getProperty("SECCM", "Pipette_FootprintScatter") == pytest.approx(0.06)


def test_flicker_noise_has_a_1_over_f_spectrum_and_its_rms(core):
    from napari_seccm.devices.simulated import simulated_rig

    rel = 0.05
    ideal_uniform(core, FlickerNoise_RelRMS=rel)
    land(core, 0.0, 0.0)
    # a long record at 200 Hz: 0.01-100 Hz
    set_props(core, "Potentiostat", Filter_Hz=50.0, SampleRate_Hz=200.0)
    core.setProperty("Potentiostat", "Waveform", '[{"hold": 1.0, "t": 400.0}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForSystem()
    i = core.getProperty("Potentiostat", "LastTrace")[2]
    from scipy.signal import welch

    f, psd = welch(i / i.mean() - 1.0, fs=200.0, nperseg=2**14)
    band = (f >= 0.03) & (f <= 3.0)
    slope = np.polyfit(np.log(f[band]), np.log(psd[band]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.3)
    # the rms over the whole band (1 mHz-10 Hz): means of short holds hours apart
    rig = simulated_rig()
    set_props(core, "Potentiostat", SampleRate_Hz=5000.0, Filter_Hz=1000.0)
    means = []
    for _ in range(200):
        rig.idle(3000.0)
        means.append(hold_mean(core, t_s=0.004))
    m = np.asarray(means)
    got = m.std(ddof=1) / m.mean()
    assert got == pytest.approx(rel, rel=3 / math.sqrt(2 * 199) + 0.05)


# ------------------------------------------------------------ grain boundaries
def _two_grains(**kw) -> SimulatedRig:
    """A film of two grains whose boundary is the line x = 0; the Au pad at x < -20."""
    params = FilmParameters(stripe_period_um=0.0, **kw)
    rig = SimulatedRig(film=params)
    rig.set_film(LLTOFilm(params, grain_seeds=np.array([[-1.0, 0.0], [1.0, 0.0]])))
    return rig


def _no_grains(**kw) -> SimulatedRig:
    return SimulatedRig(film=FilmParameters(stripe_period_um=0.0, **kw))


def test_a_grain_boundary_between_landing_and_pad_raises_the_film_term():
    gb = _two_grains()
    plain = _no_grains()
    fp = gb.film.params
    lam = fp.gb_width_nm * 1e-9 * (1 / fp.gb_conductivity_factor - 1)
    sheet = fp.sigma_film_S_per_cm * 100 * fp.thickness_nm * 1e-9
    for x in (0.5, 1.0, 3.0, 10.0):
        t_gb, t0 = gb.resistance_terms(x, 0.3), plain.resistance_terms(x, 0.3)
        # the whole current tube (circumference 2 pi r) crosses the boundary at r = x
        extra = lam / (2 * math.pi * sheet * x * 1e-6)
        assert t_gb["film_ohm"] - t0["film_ohm"] == pytest.approx(extra, rel=1e-3)
        assert t_gb["spreading_ohm"] == pytest.approx(t0["spreading_ohm"], rel=1e-12)
    # nearer the boundary, more; next to it the effect is large
    near = gb.resistance_terms(0.1, 0.0)["film_ohm"] - plain.resistance_terms(0.1, 0.0)["film_ohm"]
    assert near > 0.5 * plain.resistance_terms(0.1, 0.0)["film_ohm"]


def test_no_grain_boundary_effect_far_from_the_contact_and_not_towards_the_pad():
    gb, plain = _two_grains(), _no_grains()
    # the boundary lies beyond the contact, away from the pad, farther than the
    # spreading volume (3 footprint radii): nothing changes
    for x in (-0.3, -1.0, -5.0):
        assert gb.resistance_terms(x, 0.0) == plain.resistance_terms(x, 0.0)


def test_a_grain_boundary_in_the_spreading_volume_changes_the_spreading_only_there():
    gb, plain = _two_grains(), _no_grains()
    a_um = gb.probe().pipette.footprint_radius_nm * 1e-3
    ratios = {}
    for d in (0.0, 0.5, 1.0, 2.0, 2.9, 3.1, 5.0):
        x = -d * a_um  # the boundary on the far side: the film term is untouched
        t_gb, t0 = gb.resistance_terms(x, 0.0), plain.resistance_terms(x, 0.0)
        assert t_gb["film_ohm"] == pytest.approx(t0["film_ohm"], rel=1e-12)
        ratios[d] = t_gb["spreading_ohm"] / t0["spreading_ohm"]
    # through the centre: only the boundary's own material under the footprint
    # (the area blend of the film's spreading conductance, no image term);
    # near the edge of the footprint: the image term
    blend = 1.0 / float(gb.film.spreading_conductance(0.0, 0.0, a_um))
    assert ratios[0.0] * plain.resistance_terms(0.0, 0.0)["spreading_ohm"] == pytest.approx(
        blend, rel=1e-12
    )
    assert 1.0 < ratios[0.0] < 1.2
    assert ratios[1.0] > 1.1
    assert ratios[1.0] > ratios[2.0] > ratios[2.9] > 1.0
    assert ratios[3.1] == ratios[5.0] == 1.0


def test_a_landing_next_to_a_boundary_on_the_pad_side_reads_less_current(core):
    from napari_seccm.devices.simulated import simulated_rig

    ideal_uniform(core)
    rig = simulated_rig()
    rig.set_film(LLTOFilm(rig.film.params, grain_seeds=np.array([[-1.0, 0.0], [1.0, 0.0]])))
    land(core, 0.5, 0.0)  # the boundary 0.5 um towards the pad
    i_pad_side = hold_mean(core)
    land(core, -0.5, 5.0)  # the boundary 0.5 um away from the pad
    i_far_side = hold_mean(core)
    plain = _no_grains(pad_capacitance_F=1.0)
    i_none = 1.0 / plain.series_resistance(-0.5, 5.0, plain.probe())
    assert i_far_side == pytest.approx(i_none, rel=1e-3)
    fp = plain.film.params
    lam = fp.gb_width_nm * 1e-9 * (1 / fp.gb_conductivity_factor - 1)
    extra = lam / (2 * math.pi * fp.sigma_film_S_per_cm * 100 * fp.thickness_nm * 1e-9 * 0.5e-6)
    r_pad_side = plain.series_resistance(0.5, 0.0, plain.probe()) + extra
    assert i_pad_side == pytest.approx(1.0 / r_pad_side, rel=1e-3)
    assert i_pad_side < 0.95 * i_far_side


# ------------------------------------------------------------ film structure
def test_film_seed_is_its_own(make_core):
    def film_of(seed: int, film_seed: int) -> tuple[float, float]:
        core = make_core(seed=seed)
        set_props(core, "SECCM", GrainSize_um=2.0, FilmSeed=film_seed, StripeJitter_um=0.3)
        from napari_seccm.devices.simulated import simulated_rig

        film = simulated_rig().film
        out = (film.gb_distance_um(0.3, 0.7), core.getProperty("SECCM", "SurfaceHeight_um"))
        core.unloadAllDevices()
        return out

    a = film_of(seed=0, film_seed=1)
    assert film_of(seed=5, film_seed=1) == a  # the noise seed leaves the film alone
    b = film_of(seed=0, film_seed=2)
    assert b[0] != a[0] and b[1] != a[1]


def test_domains_of_several_widths():
    s, period, frac = 0.3, 2.0, 0.4
    film = LLTOFilm(
        FilmParameters(
            stripe_period_um=period,
            stripe_fraction_001=frac,
            stripe_angle_deg=0.0,
            stripe_jitter_um=0.0,
            stripe_width_scatter=s,
            seed=7,
        )
    )
    y = np.arange(-500.0, 500.0, 0.002)
    lab = film.domain_label(np.zeros_like(y), y).astype(int)
    edges = np.flatnonzero(np.diff(lab))
    rises = edges[lab[edges + 1] == 1]
    falls = edges[lab[edges + 1] == 0]
    falls = falls[falls > rises[0]]
    k = min(rises.size, falls.size)
    widths = (falls[:k] - rises[:k]) * 0.002
    periods = np.diff(rises) * 0.002
    # mean period and width at the nominal values; ln(width) spreads by
    # sqrt(2) s (period and fraction each log-normal), within sampling error
    assert periods.mean() == pytest.approx(period, rel=4 * s / math.sqrt(periods.size))
    assert widths.mean() == pytest.approx(frac * period, rel=5 * s / math.sqrt(widths.size))
    sd = np.log(widths).std(ddof=1)
    assert sd == pytest.approx(math.sqrt(2) * s, rel=4 / math.sqrt(2 * widths.size) + 0.03)
    # 0: the regular stripes of the report's film
    regular = LLTOFilm(
        FilmParameters(
            stripe_period_um=period,
            stripe_fraction_001=frac,
            stripe_angle_deg=0.0,
            stripe_jitter_um=0.0,
        )
    )
    lab0 = regular.domain_label(np.zeros_like(y), y).astype(int)
    e0 = np.flatnonzero(np.diff(lab0))
    assert np.ptp(np.diff(e0[lab0[e0 + 1] == 1])) <= 1


def test_a_film_of_grains_only():
    film = LLTOFilm(
        FilmParameters(stripe_period_um=0.0, grain_size_um=2.0, grain_fraction_001=0.5, seed=3)
    )
    yy, xx = np.mgrid[-10:10:0.05, -10:10:0.05]
    lab = film.domain_label(xx, yy)
    _, idx = film._grain_tree.query(np.column_stack((xx.ravel(), yy.ravel())))
    idx = idx.reshape(xx.shape)
    grains = np.unique(idx)
    per_grain = [np.unique(lab[idx == g]) for g in grains]
    assert all(v.size == 1 for v in per_grain)  # one orientation per grain
    frac = np.mean([v[0] == 1 for v in per_grain])
    assert frac == pytest.approx(0.5, abs=3.5 * math.sqrt(0.25 / grains.size))
    # no grains and no stripes: a film without domains, all [100]
    assert not LLTOFilm(FilmParameters(stripe_period_um=0.0)).domain_label(xx, yy).any()


def test_the_film_term_of_a_grain_network_counts_every_boundary_towards_the_pad():
    """On a random Voronoi network, the extra film term is lambda / (2 pi r
    sigma t) summed over the boundaries a dense walk towards the pad crosses."""
    params = FilmParameters(stripe_period_um=0.0, grain_size_um=1.5, seed=5)
    rig, plain = SimulatedRig(film=params), _no_grains()
    film = rig.film
    lam = film.gb_specific_length_um() * 1e-6
    sheet = params.sigma_film_S_per_cm * 100 * params.thickness_nm * 1e-9
    a = rig.probe().pipette.footprint_radius_nm * 1e-9
    for x, y in ((0.0, 0.1234), (5.0, -3.3), (-12.0, 7.77), (2.5, 0.1239)):
        xs = np.arange(params.pad_edge_x_um, x, 1e-4)
        _, idx = film._grain_tree.query(np.column_stack((xs, np.full(xs.size, y))))
        crossed = xs[np.flatnonzero(np.diff(idx))]
        r = np.maximum((x - crossed) * 1e-6, a)
        expected = lam / (2 * math.pi * sheet) * np.sum(1 / r)
        extra = rig.resistance_terms(x, y)["film_ohm"] - plain.resistance_terms(x, y)["film_ohm"]
        assert extra == pytest.approx(expected, rel=0.01)
        assert extra > 0
