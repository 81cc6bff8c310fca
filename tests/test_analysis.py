"""The analysis package against simulated LLTO scans with a known truth.

The scans run through the real stack (UniMMCore + the shipped config + the
hopping engine + the zarr store), with the film chosen through the ``Sample``
device's properties and the pipette declared in the plan (as on a real
instrument) and pinned to the same values in the simulator. Expected values
come from the simulator's physics module (``napari_seccm.simulation.physics``),
which the analysis's series model now uses too; so the series model's terms are
checked here against textbook formulas written out in the tests.

One CA map (12 x 12 um at 0.3 um, stripes 2.4 um at 125 deg, anisotropy 30)
and one small staircase I-V map are scanned once per module.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_seccm.analysis import (
    boundary_contrast,
    class_ratio,
    conductance_maps,
    current_map,
    domain_statistics,
    fit_iv,
    footprint_resolution,
    height_map,
    histogram,
    iv_sample_mask,
    line_profile,
    plane_fit,
    point_iv_fit,
    segment_domains,
    stripe_period_angle,
)
from napari_seccm.analysis import maps as amaps
from napari_seccm.analysis.report import analyze_store
from napari_seccm.analysis.series import SeriesModel, domain_spreading_ratio
from napari_seccm.model import PipetteGeometry

# ------------------------------------------------------------------- truth
PERIOD_UM = 2.4
ANGLE_DEG = 125.0
ANISOTROPY = 30.0
FRACTION_001 = 0.4
TILT_X = 0.01
TILT_Y = 0.004
CA_PROPS = {
    "StripePeriod_um": PERIOD_UM,
    "StripeAngle_deg": ANGLE_DEG,
    "Anisotropy": ANISOTROPY,
    "StripeFraction001": FRACTION_001,
    "TiltX_um_per_um": TILT_X,
    "TiltY_um_per_um": TILT_Y,
}
IV_PROPS = {"StripePeriod_um": 2.0, "StripeAngle_deg": 30.0, "Anisotropy": 10.0}
# the simulator's defaults that the truth below also needs
FOOTPRINT_NM = 100.0
TIP_NM = 50.0
HALF_ANGLE_DEG = 5.0
ELECTROLYTE_S_PER_CM = 1e-2
SIGMA_FAST_S_PER_CM = 1e-3
THICKNESS_NM = 50.0
PAD_EDGE_X_UM = -20.0
# set on every test scan, so the truth does not depend on the simulator's defaults
PINNED = {
    "Pipette_FootprintRadius_nm": FOOTPRINT_NM,
    "Pipette_TipRadius_nm": TIP_NM,
    "Pipette_HalfAngle_deg": HALF_ANGLE_DEG,
    "Pipette_Electrolyte_S_per_cm": ELECTROLYTE_S_PER_CM,
    "SigmaFast_S_per_cm": SIGMA_FAST_S_PER_CM,
    "Thickness_nm": THICKNESS_NM,
    "PadEdgeX_um": PAD_EDGE_X_UM,
}
# the same pipette, declared in every test scan's plan (where the analysis reads it)
PIPETTE = PipetteGeometry(
    tip_radius_nm=TIP_NM,
    half_angle_deg=HALF_ANGLE_DEG,
    electrolyte_S_per_cm=ELECTROLYTE_S_PER_CM,
    footprint_radius_nm=FOOTPRINT_NM,
)


def agm(a: float, b: float) -> float:
    """Arithmetic-geometric mean (the complete elliptic integral without scipy:
    ``K(m) = pi / (2 AGM(1, sqrt(1 - m)))``)."""
    while abs(a - b) > 1e-15 * abs(a):
        a, b = (a + b) / 2, math.sqrt(a * b)
    return a


def _physics():
    from napari_seccm.simulation import physics

    return physics


def r_total_truth(orientation: str, x_um: float, anisotropy: float) -> float:
    """R_total of a landing fully inside one domain type, from the simulator's
    physics module (Ohm)."""
    ph = _physics()
    a = FOOTPRINT_NM * 1e-9
    fast = SIGMA_FAST_S_PER_CM * 100
    g_sp = ph.spreading_conductance(
        a, *ph.orientation_conductivities(fast, fast / anisotropy, orientation)
    )
    r_pip = ph.pipette_resistance(TIP_NM * 1e-9, HALF_ANGLE_DEG, ELECTROLYTE_S_PER_CM * 100)
    r_film = float(ph.film_resistance((x_um - PAD_EDGE_X_UM) * 1e-6, a, 0.1, THICKNESS_NM * 1e-9))
    return r_pip + 1.0 / float(g_sp) + r_film


def angle_diff(a: float, b: float) -> float:
    d = (a - b) % 180.0
    return min(d, 180.0 - d)


# ------------------------------------------------------------------- scans
def _scan(path: Path, plan, props: dict[str, float]) -> Path:
    from _scan_helpers import scan_to_store

    plan = plan.model_copy(update={"pipette": PIPETTE})
    return scan_to_store(path, plan, {**PINNED, **props})


@pytest.fixture(scope="module")
def ca_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report's map: CA at 1.0 V, 12 x 12 um at 0.3 um (1600 points)."""
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan

    plan = ScanPlan(area=RectangleArea(width_um=12.0, height_um=12.0), pitch_um=0.3)
    return _scan(tmp_path_factory.mktemp("ca") / "ca.seccm.zarr", plan, CA_PROPS)


@pytest.fixture(scope="module")
def iv_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A staircase I-V map: 0..1 V in 8 steps of 5 ms, 4 x 4 um at 0.4 um."""
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan, Staircase

    plan = ScanPlan(
        area=RectangleArea(width_um=4.0, height_um=4.0, center_x_um=1.0),
        pitch_um=0.4,
        measurement=Staircase(start_V=0.0, end_V=1.0, steps=8, hold_s=0.005),
    )
    # an idealized film and droplet (no landing scatter, 1/f, drift): its tests
    # compare each pixel with the exact series model
    from napari_seccm.devices.simulated import IDEAL_PROPERTIES

    return _scan(
        tmp_path_factory.mktemp("iv") / "iv.seccm.zarr", plan, {**IV_PROPS, **IDEAL_PROPERTIES}
    )


@pytest.fixture(scope="module")
def ca_ideal_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report's map on an idealized film and droplet (no late landings,
    landing scatter, drift or 1/f noise)."""
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
    from napari_seccm.devices.simulated import IDEAL_PROPERTIES

    plan = ScanPlan(area=RectangleArea(width_um=12.0, height_um=12.0), pitch_um=0.3)
    path = tmp_path_factory.mktemp("ca_ideal") / "ca.seccm.zarr"
    return _scan(path, plan, {**CA_PROPS, **IDEAL_PROPERTIES})


@pytest.fixture(scope="module")
def ca_result(ca_store: Path) -> dict:
    return analyze_store(ca_store, anisotropy=ANISOTROPY, return_maps=True)


# ------------------------------------------------------------- isolation
def test_analysis_imports_no_qt_no_core_no_napari(ca_store: Path, tmp_path: Path) -> None:
    """Importing and running the analysis (incl. lazy imports: dask, export
    writers, matplotlib figures, the whole analyze pipeline with its stripe
    test and classes) pulls in neither Qt, pymmcore-plus nor napari."""
    code = textwrap.dedent(
        f"""
        import sys
        import napari_seccm.analysis as A
        from napari_seccm.analysis import classify, export, lines, report, maps, stripes
        A.fit_iv([0.0, 1.0, 2.0], [0.0, 1.0, 2.1])
        maps.current_map({str(ca_store)!r}, window_s=(0.01, 0.02))
        r = report.analyze_store({str(ca_store)!r})
        assert r["warnings"] == [] and r["stripes_significant"], r["warnings"]
        export.export_store({str(ca_store)!r}, {str(tmp_path / "m.png")!r})
        export.export_store({str(ca_store)!r}, {str(tmp_path / "m.gwy")!r})
        bad = sorted(m for m in sys.modules if m.split(".")[0] in (
            "pymmcore_plus", "pymmcore", "napari", "qtpy", "PyQt5", "PyQt6",
            "PySide2", "PySide6", "superqt", "magicgui", "vispy", "pymmcore_widgets"))
        print("BAD", bad)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "BAD []" in r.stdout, r.stdout


# ------------------------------------------------------------------ I-V fits
def test_fit_iv_matches_scipy_linregress() -> None:
    from scipy.stats import linregress

    rng = np.random.default_rng(3)
    E = np.linspace(-0.2, 1.0, 37)
    G = rng.uniform(1e-9, 5e-9, 50)
    I = G[:, None] * E + 2e-12 + rng.normal(0, 5e-12, (50, E.size))
    f = fit_iv(E, I.astype(np.float32), block_rows=7)  # several blocks
    for k in (0, 17, 49):
        lr = linregress(E, I[k].astype(np.float32).astype(float))
        assert f["conductance_S"][k] == pytest.approx(lr.slope, rel=1e-9)
        assert f["offset_A"][k] == pytest.approx(lr.intercept, rel=1e-6, abs=1e-18)
        assert f["r2"][k] == pytest.approx(lr.rvalue**2, rel=1e-9)
        assert f["conductance_err_S"][k] == pytest.approx(lr.stderr, rel=1e-6)
    # per-pixel potentials and NaN samples take the general path, same answer
    Ep = np.broadcast_to(E, I.shape).copy()
    In = I.copy()
    In[3, 5] = np.nan
    g2 = fit_iv(Ep, In)
    lr = linregress(np.delete(E, 5), np.delete(I[3], 5))
    assert g2["conductance_S"][3] == pytest.approx(lr.slope, rel=1e-9)
    assert g2["n"][3] == E.size - 1
    np.testing.assert_allclose(
        g2["conductance_S"][4:], fit_iv(E, I)["conductance_S"][4:], rtol=1e-9
    )


def test_fit_iv_degenerate_pixels_are_nan_not_zero() -> None:
    E = np.array([0.5, 0.5, 0.5])
    f = fit_iv(E, np.array([[1.0, 2.0, 3.0]]))
    assert np.isnan(f["conductance_S"][0]) and np.isnan(f["resistance_ohm"][0])
    f = fit_iv(np.array([0.0, 1.0, 2.0]), np.array([[np.nan, 1.0, np.nan]]))
    assert np.isnan(f["conductance_S"][0]) and f["n"][0] == 1
    # scalar case (the demo's): 0-d arrays
    f = fit_iv(np.linspace(0, 1, 11), 3e-9 * np.linspace(0, 1, 11))
    assert float(f["conductance_S"]) == pytest.approx(3e-9)


def test_iv_fit_of_a_staircase_map_recovers_the_series_model(iv_store: Path) -> None:
    """Each pixel's fitted G is 1 / R_total of the simulator at that landing."""
    from napari_seccm.simulation.sample import FilmParameters, LLTOFilm

    ph = _physics()
    cm = conductance_maps(iv_store)
    assert cm["method"] == "iv_fit"
    assert amaps.quality_counts(cm["quality"])["ok"] == 100
    film = LLTOFilm(FilmParameters(stripe_period_um=2.0, stripe_angle_deg=30.0, anisotropy=10.0))
    x, y = cm["x_um"], cm["y_um"]
    g_sp = film.spreading_conductance(x, y, FOOTPRINT_NM * 1e-3)
    r_pip = ph.pipette_resistance(TIP_NM * 1e-9, HALF_ANGLE_DEG, 1.0)
    r_film = ph.film_resistance(
        (x - PAD_EDGE_X_UM) * 1e-6, FOOTPRINT_NM * 1e-9, 0.1, THICKNESS_NM * 1e-9
    )
    g_true = 1.0 / (r_pip + 1.0 / g_sp + r_film)
    np.testing.assert_allclose(cm["conductance_S"], g_true, rtol=5e-3)
    assert np.nanmin(cm["r2"]) > 0.9999
    assert np.nanmax(np.abs(cm["offset_A"])) < 20e-12  # back-contact offset, pA
    # against a per-pixel scipy fit of the same samples
    from scipy.stats import linregress

    mask = iv_sample_mask(
        __import__("napari_seccm.acquisition.store", fromlist=["x"]).ScanStore.open(iv_store).plan()
    )
    root = zarr.open_group(str(iv_store), mode="r")
    cur = root["traces/current_A"][:]
    pot = root["traces/potential_V"][:]
    rows, cols = root["points/row"][:], root["points/col"][:]
    for i in (0, 37, 99):
        lr = linregress(pot[i, mask].astype(float), cur[i, mask].astype(float))
        assert cm["conductance_S"][rows[i], cols[i]] == pytest.approx(lr.slope, rel=1e-6)


def test_iv_sample_mask_keeps_the_settled_half_of_each_step(iv_store: Path) -> None:
    from napari_seccm.acquisition.store import ScanStore

    plan = ScanStore.open(iv_store).plan()
    m = iv_sample_mask(plan, settle_fraction=0.5)
    per_step = m.reshape(8, 25)
    assert (per_step.sum(axis=1) == 13).all()
    assert not per_step[:, :12].any() and per_step[:, 12:].all()
    # settle_s: the first 0.8 ms (5 filter time constants at 1 kHz) of every
    # segment; on its own it leaves 21 of each step's 25 samples
    m0 = iv_sample_mask(plan, settle_fraction=0.0)
    assert (m0.reshape(8, 25).sum(axis=1) == 21).all()
    assert iv_sample_mask(plan, settle_fraction=0.0, settle_s=0.0).all()
    m2 = iv_sample_mask(plan, potential_range_V=(0.4, 1.0))
    assert m2.reshape(8, 25)[:3].sum() == 0 and m2.reshape(8, 25)[3:].any()
    with pytest.raises(ValueError, match="settle_fraction"):
        iv_sample_mask(plan, settle_fraction=1.0)


def test_current_at_a_potential_and_in_a_time_window(iv_store: Path) -> None:
    cm = conductance_maps(iv_store)
    at = current_map(iv_store, potential_V=4 / 7, settle_fraction=0.5)  # the 5th step
    expect = cm["conductance_S"] * 4 / 7 + cm["offset_A"]
    np.testing.assert_allclose(at["current_A"], expect, rtol=1e-3)
    assert at["samples_used"].sum() == 13  # its settled half
    whole = current_map(iv_store, potential_V=4 / 7)  # with the filter's transient
    assert whole["samples_used"].sum() == 25
    assert np.nanmean(whole["current_A"] / at["current_A"]) < 1.0
    # the readout window reproduces the store's own map value exactly
    root = zarr.open_group(str(iv_store), mode="r")
    w = tuple(root.attrs["seccm"]["readout_window_s"])
    win = current_map(iv_store, window_s=w)
    np.testing.assert_allclose(win["current_A"], root["maps/current/0"][:], rtol=1e-6)
    with pytest.raises(ValueError, match="no sample"):
        current_map(iv_store, potential_V=5.0)


def test_quality_mask_turns_bad_pixels_to_nan(iv_store: Path, tmp_path: Path) -> None:
    """No contact, saturated, not measured, poor fit, negative slope: NaN, never 0."""
    from napari_seccm.acquisition.store import NO_CONTACT, SATURATED

    bad = tmp_path / "bad.seccm.zarr"
    shutil.copytree(iv_store, bad, ignore=shutil.ignore_patterns(".lock"))
    root = zarr.open_group(str(bad), mode="r+")
    rows, cols = root["points/row"][:], root["points/col"][:]
    st = root["results/status"]
    st[3] = NO_CONTACT
    st[4] = SATURATED
    root["results/done"][5] = 0
    cur = root["traces/current_A"]
    rng = np.random.default_rng(0)
    cur[6] = rng.normal(0, 1e-9, cur.shape[1]).astype(np.float32)  # no line: poor fit
    cur[7] = -cur[8]  # negative conductance
    cm = conductance_maps(bad, r2_min=0.9)
    q = cm["quality"]
    expect = {
        3: amaps.QUALITY_NO_CONTACT,
        4: amaps.QUALITY_SATURATED,
        5: amaps.QUALITY_NOT_MEASURED,
        6: amaps.QUALITY_POOR_FIT,
        7: amaps.QUALITY_NON_POSITIVE,
    }
    for i, code in expect.items():
        assert q[rows[i], cols[i]] == code
        for k in ("conductance_S", "resistance_ohm", "r2", "offset_A"):
            assert np.isnan(cm[k][rows[i], cols[i]]), (i, k)
    ok = q == amaps.QUALITY_OK
    assert ok.sum() == 100 - len(expect)
    assert np.isfinite(cm["conductance_S"][ok]).all() and (cm["conductance_S"][ok] > 0).all()
    assert not (cm["conductance_S"] == 0).any()
    assert np.isnan(cm["current_A"][rows[3], cols[3]])  # no contact: no current value


# ------------------------------------------------------------ dask / scale
def test_iv_fit_chunk_by_chunk_and_on_a_distributed_cluster(iv_store: Path, monkeypatch) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    ref = point_iv_fit(iv_store)
    # many small chunks: the same numbers
    monkeypatch.setattr(amaps, "CHUNK_BYTES", 1)
    from napari_seccm.acquisition.store import ScanStore

    with ScanStore.open(iv_store) as s:
        d = amaps.trace_array(s)
        assert d.numblocks[0] > 1
        # the graph holds the zarr arrays, not the data, and pickles for workers
        assert len(pickle.dumps(d)) < 100_000
    small = point_iv_fit(iv_store)
    np.testing.assert_allclose(small["conductance_S"], ref["conductance_S"], rtol=1e-12)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster),
        get_task_stream() as ts,
    ):
        dist = point_iv_fit(iv_store)
    assert len(ts.data) > 0  # the tasks ran on the cluster
    np.testing.assert_allclose(dist["conductance_S"], ref["conductance_S"], rtol=1e-12)


# ------------------------------------------------------------ topography
def test_height_map_plane_removal_recovers_the_tilt(ca_ideal_store: Path) -> None:
    h = height_map(ca_ideal_store)
    assert h["slope_x_um_per_um"] == pytest.approx(TILT_X, abs=5e-4)
    assert h["slope_y_um_per_um"] == pytest.approx(TILT_Y, abs=5e-4)
    assert h["roughness_rms_nm"] < 5.0  # 1 nm roughness + detection jitter
    assert abs(np.nanmean(h["height_flat_um"])) < 1e-3


def test_plane_fit_is_exact_on_a_plane_and_ignores_outliers() -> None:
    yy, xx = np.mgrid[0:20, 0:30]
    x0, y0, p = 3.0, -2.0, 0.5
    x, y = x0 + (xx + 0.5) * p, y0 + (yy + 0.5) * p
    z = 1.0 + 0.02 * x - 0.03 * y
    z[5, 5] = 100.0
    z[6, 7] = np.nan
    f = plane_fit(z, x0_um=x0, y0_um=y0, pitch_um=p)
    assert f["slope_x_per_um"] == pytest.approx(0.02, abs=1e-12)
    assert f["slope_y_per_um"] == pytest.approx(-0.03, abs=1e-12)
    xc, yc = f["center_um"]
    assert f["offset"] == pytest.approx(1.0 + 0.02 * xc - 0.03 * yc)
    assert np.isnan(f["residual"][6, 7])


# --------------------------------------------------------- stripes, domains
def test_stripe_period_and_angle_recovered(ca_store: Path, ca_result: dict) -> None:
    r = ca_result
    assert r["period_um"] == pytest.approx(PERIOD_UM, rel=0.05)
    assert angle_diff(r["angle_deg"], ANGLE_DEG) < 2.0
    assert 0 <= r["angle_deg"] < 180
    assert 0 < r["period_um_err"] < 0.1 and 0 < r["angle_deg_err"] < 2.0
    # the autocorrelation agrees
    assert r["period_um_acf"] == pytest.approx(PERIOD_UM, rel=0.05)
    assert angle_diff(r["angle_deg_acf"], ANGLE_DEG) < 3.0


def test_stripe_angle_convention_on_synthetic_maps() -> None:
    """Along the stripes, CCW from +x, [0, 180); rows are y."""
    yy, xx = np.mgrid[0:50, 0:60]
    p = 0.25
    x, y = -3 + (xx + 0.5) * p, 1 + (yy + 0.5) * p
    for ang in (0.0, 20.0, 75.0, 90.0, 140.0):
        th = math.radians(ang)
        across = -x * math.sin(th) + y * math.cos(th)
        img = (np.mod(across / 1.7, 1.0) < 0.4).astype(float) + 0.02 * x
        r = stripe_period_angle(img, pitch_um=p, x0_um=-3, y0_um=1)
        assert r["period_um"] == pytest.approx(1.7, rel=0.01)
        assert angle_diff(r["angle_deg"], ang) < 0.5, (ang, r["angle_deg"])


def test_segmentation_matches_the_true_domains(ca_store: Path, ca_result: dict) -> None:
    from napari_seccm.simulation.sample import (
        DOMAIN_001,
        FilmParameters,
        LLTOFilm,
    )

    labels = ca_result["maps"]["labels"]
    film = LLTOFilm(
        FilmParameters(
            stripe_period_um=PERIOD_UM,
            stripe_angle_deg=ANGLE_DEG,
            stripe_fraction_001=FRACTION_001,
        )
    )
    truth = film.domain_label(ca_result["maps"]["x_um"], ca_result["maps"]["y_um"])
    agree = np.mean((labels == 1) == (truth == DOMAIN_001))
    assert agree > 0.9
    assert ca_result["fraction_001"] == pytest.approx(FRACTION_001, abs=0.08)
    lo, hi = ca_result["fraction_001_ci95"]
    assert lo <= FRACTION_001 <= hi


def test_conductance_ratios_recovered(ca_result: dict) -> None:
    r = ca_result
    # the spreading-only ratio [100]/[001], after subtracting pipette and film
    truth_sp = _physics().domain_conductance_ratio(ANISOTROPY)
    assert truth_sp == pytest.approx(domain_spreading_ratio(ANISOTROPY), rel=1e-9)
    # independently: G[100] / G[001] = (pi / 2) sqrt(A) / K(1 - 1/A) = AGM(1, sqrt(A))
    # (the ellipse on the half-space against Holm's 4 a sqrt(sigma_in sigma_z))
    assert truth_sp == pytest.approx(agm(1.0, math.sqrt(ANISOTROPY)), rel=1e-9)
    for a in (3.0, 10.0, 100.0):
        assert domain_spreading_ratio(a) == pytest.approx(agm(1.0, math.sqrt(a)), rel=1e-9)
    assert r["spreading_conductance_ratio"] == pytest.approx(truth_sp, rel=0.10)
    lo, hi = r["spreading_conductance_ratio_ci95"]
    assert lo <= r["spreading_conductance_ratio"] <= hi
    # the measured current ratio: 1/R_total of landings inside each domain,
    # at the map centre (x = 0)
    truth_meas = r_total_truth("001", 0.0, ANISOTROPY) / r_total_truth("100", 0.0, ANISOTROPY)
    assert r["conductance_ratio"] == pytest.approx(truth_meas, rel=0.10)
    assert r["conductance_ratio"] == pytest.approx(truth_meas, rel=0.02)
    lo, hi = r["conductance_ratio_ci95"]
    assert lo <= r["conductance_ratio"] <= hi
    # the intervals hold the truth (the simulator's scatter, drift and
    # blending included), and the map raises no warning
    assert lo <= truth_meas <= hi
    lo, hi = r["spreading_conductance_ratio_ci95"]
    assert lo <= truth_sp <= hi
    assert r["warnings"] == []
    assert r["classification"]["method"] == "stripe_model"
    assert r["series_model_source"] == "store rig snapshot"


def test_local_conductivity_recovered(ca_result: dict) -> None:
    """The anisotropic inversion gives sigma_fast = 1e-3 S/cm in both domains;
    the isotropic one sqrt(sigma_in sigma_z) of each."""
    sf = ca_result["sigma_fast_S_per_cm"]
    assert sf["100"] == pytest.approx(SIGMA_FAST_S_PER_CM, rel=0.1)
    assert sf["001"] == pytest.approx(SIGMA_FAST_S_PER_CM, rel=0.1)
    iso = ca_result["conductivity_S_per_cm"]
    assert iso["001"] == pytest.approx(SIGMA_FAST_S_PER_CM / math.sqrt(ANISOTROPY), rel=0.1)


def test_series_model_from_meta_and_overrides(ca_store: Path) -> None:
    """The pipette from the plan recorded in the store (the rig snapshot for an
    older store), the film from the rig snapshot, arguments over both; each
    term against its textbook formula."""
    import copy

    from napari_seccm.acquisition.store import ScanStore

    meta = ScanStore.open(ca_store).meta
    assert meta["plan"]["pipette"] == PIPETTE.model_dump()
    m = SeriesModel.from_meta(meta)
    src = SeriesModel.sources(meta)
    assert {src[k] for k in PipetteGeometry.model_fields} == {"plan"}
    assert src["thickness_nm"] == src["pad_edge_x_um"] == "rig snapshot"
    ph = _physics()
    assert m.pipette_resistance_ohm == pytest.approx(ph.pipette_resistance(50e-9, 5.0, 1.0))
    assert float(m.film_resistance_ohm(0.0)) == pytest.approx(
        float(ph.film_resistance(20e-6, 1e-7, 0.1, 50e-9))
    )
    # textbook: a cone of 1 S/m electrolyte, r = 50 nm, 5 deg: 1 / (kappa pi r tan theta)
    r_pip = 1.0 / (1.0 * math.pi * 50e-9 * math.tan(math.radians(5.0)))
    assert m.pipette_resistance_ohm == pytest.approx(r_pip, rel=1e-12)
    assert r_pip == pytest.approx(72.76e6, rel=1e-3)  # 72.8 MOhm, by hand
    # a 50 nm film of 0.1 S/m collected 20 um away by the pad: ln(L / a) / (2 pi sigma t)
    r_film = math.log(20e-6 / 100e-9) / (2 * math.pi * 0.1 * 50e-9)
    assert float(m.film_resistance_ohm(0.0)) == pytest.approx(r_film, rel=1e-12)
    # ASR / (pi a^2): 1e-3 Ohm cm^2 on a 100 nm disk
    m_ct = SeriesModel.from_meta(meta, asr_ohm_cm2=1e-3)
    assert m_ct.interface_resistance_ohm == pytest.approx(1e-7 / (math.pi * 1e-14), rel=1e-12)
    # Holm: the isotropic spreading conductance 4 a sigma inverts to sigma
    assert float(m.conductivity_S_per_cm(4 * 1e-7 * 0.1)) == pytest.approx(1e-3, rel=1e-12)
    # arguments win
    assert SeriesModel.from_meta(meta, tip_radius_nm=30.0).tip_radius_nm == 30.0
    assert SeriesModel.sources(meta, tip_radius_nm=30.0)["tip_radius_nm"] == "argument"
    # the plan's pipette wins over the simulator's
    other = copy.deepcopy(meta)
    other["plan"]["pipette"]["footprint_radius_nm"] = 150.0
    assert SeriesModel.from_meta(other).footprint_radius_nm == 150.0
    # a store from before plans recorded the pipette: the rig snapshot's
    old = copy.deepcopy(meta)
    del old["plan"]["pipette"]
    assert SeriesModel.from_meta(old) == m
    assert {SeriesModel.sources(old)[k] for k in PipetteGeometry.model_fields} == {"rig snapshot"}
    # a store with the plan's pipette but no simulated film: the film is missing, by name
    real = copy.deepcopy(meta)
    real["rig"]["devices"] = {}
    with pytest.raises(ValueError, match="give them as arguments") as e:
        SeriesModel.from_meta(real)
    assert "thickness_nm" in str(e.value) and "tip_radius_nm" not in str(e.value)
    with pytest.raises(ValueError, match="give them as arguments"):
        SeriesModel.from_meta({})
    with pytest.raises(ValueError, match="unknown"):
        SeriesModel.from_meta(meta, tip_radius=3.0)
    # a store without a rig snapshot: the spreading ratio needs parameters
    r = analyze_store(ca_store, series={}, n_boot=50)
    assert r["spreading_conductance_ratio"] is not None


def test_class_ratio_bootstrap_and_statistics() -> None:
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(2.0, 0.1, 400), rng.normal(1.0, 0.1, 200)])
    lab = np.concatenate([np.zeros(400, int), np.ones(200, int)])
    v[0] = np.nan
    r = class_ratio(v, lab, statistic="mean", n_boot=500)
    assert r["ratio"] == pytest.approx(2.0, rel=0.02)
    lo, hi = r["ci"]
    assert lo < 2.0 < hi and hi - lo < 0.1
    st = domain_statistics(v, lab)
    assert st["100"]["n"] == 399 and st["001"]["n"] == 200
    assert st["001"]["std"] == pytest.approx(0.1, rel=0.2)
    h = histogram(v, bins=20, labels=lab)
    assert h["counts"].sum() == 599
    assert (h["counts_100"] + h["counts_001"] == h["counts"]).all()


def test_segment_domains_ignores_a_gradient() -> None:
    yy, xx = np.mgrid[0:40, 0:40]
    stripes = (np.mod(xx + yy, 8) < 3).astype(float)
    img = 2.0 - 0.5 * stripes + 0.04 * xx  # gradient as large as the contrast
    seg = segment_domains(img, pitch_um=1.0)
    assert np.array_equal(seg["labels"] == 1, stripes == 1)
    assert seg["plane"]["slope_x_per_um"] == pytest.approx(0.04, rel=1e-6)


# ------------------------------------------------------ profiles and GBs
def test_line_profile_on_a_ramp_with_width_and_nan() -> None:
    yy, xx = np.mgrid[0:30, 0:40]
    x0, y0, p = -2.0, 1.0, 0.2
    img = 3.0 * (x0 + (xx + 0.5) * p) - 2.0 * (y0 + (yy + 0.5) * p)
    prof = line_profile(img, (-1.0, 2.0), (4.0, 5.0), x0_um=x0, y0_um=y0, pitch_um=p)
    expect = 3.0 * prof["x_um"] - 2.0 * prof["y_um"]
    np.testing.assert_allclose(prof["value"], expect, atol=1e-9)
    assert prof["distance_um"][-1] == pytest.approx(math.hypot(5, 3))
    wide = line_profile(img, (-1.0, 2.0), (4.0, 5.0), x0_um=x0, y0_um=y0, pitch_um=p, width_um=1.0)
    np.testing.assert_allclose(wide["value"], expect, atol=1e-9)  # a plane averages to itself
    assert (wide["n"] > 1).all() and np.nanmax(wide["std"]) > 0
    img[15, :] = np.nan
    prof = line_profile(img, (-1.0, 2.0), (4.0, 5.0), x0_um=x0, y0_um=y0, pitch_um=p)
    assert np.isfinite(prof["value"]).all()  # NaN-aware interpolation bridges it
    with pytest.raises(ValueError):
        line_profile(img, (1.0, 1.0), (1.0, 1.0), x0_um=x0, y0_um=y0, pitch_um=p)


def test_line_profile_across_the_stripes_shows_the_period(ca_result: dict) -> None:
    g = ca_result["grid"]
    th = math.radians(ANGLE_DEG + 90.0)  # across the stripes
    c = (
        g["x0_um"] + g["nx"] * g["pitch_um"] / 2,
        g["y0_um"] + g["ny"] * g["pitch_um"] / 2,
    )
    h = 5.0
    a = (c[0] - h * math.cos(th), c[1] - h * math.sin(th))
    b = (c[0] + h * math.cos(th), c[1] + h * math.sin(th))
    prof = line_profile(
        ca_result["maps"]["conductance_flat_S"],
        a,
        b,
        x0_um=g["x0_um"],
        y0_um=g["y0_um"],
        pitch_um=g["pitch_um"],
        width_um=1.0,
    )
    v = prof["value"] - np.nanmean(prof["value"])
    d = prof["distance_um"]
    f = np.fft.rfftfreq(4096, d=d[1] - d[0])
    spec = np.abs(np.fft.rfft(np.nan_to_num(v) * np.hanning(v.size), 4096))
    spec[f < 0.2] = 0
    assert 1 / f[np.argmax(spec)] == pytest.approx(PERIOD_UM, rel=0.06)


def _grain_map(grain_size_um: float, noise: float = 1e-3):
    """Spreading-conductance map of a stripe-free film with grain boundaries,
    straight from the simulated film (footprint 0.1 um, pitch 0.1 um)."""
    from napari_seccm.simulation.sample import FilmParameters, LLTOFilm

    film = LLTOFilm(
        FilmParameters(
            stripe_period_um=0.0,
            grain_size_um=grain_size_um,
            gb_width_nm=40.0,
            gb_conductivity_factor=1e-3,
            seed=4,
        )
    )
    p, n = 0.1, 60
    x0 = y0 = -n * p / 2
    yy, xx = np.mgrid[0:n, 0:n]
    g = film.spreading_conductance(x0 + (xx + 0.5) * p, y0 + (yy + 0.5) * p, 0.1)
    g = g * (1 + np.random.default_rng(0).normal(0, noise, g.shape))
    return film, g, x0, y0, p


def test_grain_boundary_contrast_against_noise() -> None:
    film, g, x0, y0, p = _grain_map(3.0)
    seeds = film._grain_seeds
    # two neighbouring grains near the centre: the boundary is their bisector
    s1 = seeds[np.argmin(np.hypot(*seeds.T))]
    order = np.argsort(np.hypot(*(seeds - s1).T))
    for j in order[1:]:
        s2 = seeds[j]
        mid = (s1 + s2) / 2
        _, idx = film._grain_tree.query(mid, k=2)
        if (
            set(idx) == {int(np.flatnonzero((seeds == s1).all(1))[0]), int(j)}
            and np.abs(mid).max() < 1.5
        ):
            break
    else:
        pytest.skip("no neighbouring grain pair near the centre")
    u = (s2 - s1) / np.linalg.norm(s2 - s1)
    a, b = mid - 1.2 * u, mid + 1.2 * u
    r = boundary_contrast(
        g, tuple(a), tuple(b), x0_um=x0, y0_um=y0, pitch_um=p, footprint_radius_um=0.1
    )
    assert r["significant"] and r["contrast_to_noise"] > 10
    assert r["position_um"] == pytest.approx(1.2, abs=2 * p)
    # a 40 nm line under a 100 nm footprint: ~25 % of the area, blended
    assert 0.1 < r["relative_depth"] < 0.4
    assert r["resolution"]["min_detectable_width_nm"] < 40.0
    # the same line on a film without boundaries: nothing significant
    _, g0, *_ = _grain_map(0.0)
    r0 = boundary_contrast(g0, tuple(a), tuple(b), x0_um=x0, y0_um=y0, pitch_um=p, position_um=1.2)
    assert not r0["significant"]


def test_footprint_resolution_numbers() -> None:
    r = footprint_resolution(0.1, 0.3, relative_noise=1e-3, gb_conductivity_factor=0.0)
    assert r["footprint_diameter_um"] == pytest.approx(0.2)
    assert r["resolution_um"] == pytest.approx(0.6)  # 2 x pitch dominates
    assert r["hit_fraction"] == pytest.approx(2 / 3)
    # 3 x 1e-3 = (2 w / (pi a)) -> w = 1.5e-3 pi a
    assert r["min_detectable_width_nm"] == pytest.approx(1.5e-3 * math.pi * 100, rel=1e-9)


# -------------------------------------------------------------------- CLI
def test_cli_analyze_json(ca_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exe = Path(sys.executable).parent / "napari-seccm"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_seccm.cli"]
    r = subprocess.run(
        [*cmd, "analyze", str(ca_store), "--json", "--n-boot", "200"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["period_um"] == pytest.approx(PERIOD_UM, rel=0.05)
    assert angle_diff(out["angle_deg"], ANGLE_DEG) < 2.0
    for k in ("period_um_err", "angle_deg_err"):
        assert out[k] > 0
    # the honest analysis's additions, next to the old keys
    assert out["stripes_significant"] is True and out["warnings"] == []
    assert out["stripe_test"]["p_value"] < 1e-10
    assert len(out["fraction_001_ci95"]) == 2
    lo, hi = out["conductance_ratio_ci95"]
    assert lo <= out["conductance_ratio"] <= hi
    assert out["spreading_conductance_ratio"] == pytest.approx(
        _physics().domain_conductance_ratio(ANISOTROPY), rel=0.1
    )
    # clear errors for bad input (the same entry point, in this process)
    from napari_seccm.cli import main

    capsys.readouterr()
    (tmp_path / "plain").mkdir()
    for path, msg in (
        (tmp_path / "missing.seccm.zarr", "does not exist"),
        (tmp_path / "plain", "not a SECCM scan store"),
    ):
        assert main(["analyze", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err
    out = tmp_path / "r.txt"
    assert main(["analyze", str(ca_store), "--out", str(out), "--n-boot", "50"]) == 0
    assert "stripes          period" in out.read_text()
    assert main(["analyze", str(ca_store), "--out", str(out)]) == 2  # exists
    assert "exists" in capsys.readouterr().err


def test_a_coarse_map_where_the_two_period_estimates_disagree_says_so(
    tmp_path: Path, ca_result: dict
) -> None:
    """At 1 um pitch the 2 um stripes are barely sampled: the autocorrelation
    and the spectrum disagree, and the summary says to look at the map. The
    well-sampled report map (0.3 um) carries no such note."""
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
    from napari_seccm.analysis.report import summary_text

    plan = ScanPlan(area=RectangleArea(width_um=12.0, height_um=12.0), pitch_um=1.0)
    coarse = analyze_store(_scan(tmp_path / "coarse.seccm.zarr", plan, CA_PROPS), n_boot=50)
    assert any("disagrees with the spectrum" in n for n in coarse["notes"]), coarse["notes"]
    assert "disagrees with the spectrum" in summary_text(coarse)
    assert not any("disagrees" in n for n in ca_result["notes"])
