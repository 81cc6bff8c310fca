"""Scan plans: defaults, serialisation, geometry, order, estimates, validation."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from _scan_helpers import loaded_core, rig_state
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from napari_seccm.acquisition.plan import (
    ApproachSettings,
    Chronoamperometry,
    CyclicVoltammetry,
    EdgesArea,
    PlanError,
    PointsArea,
    PolygonArea,
    PotentiostatSettings,
    RectangleArea,
    SafetySettings,
    ScanPlan,
    Staircase,
    check_plan_against_core,
    plan_template_yaml,
)
from napari_seccm.acquisition.scan import Scan, run_scan
from napari_seccm.model import Hold, PipetteGeometry, ProbeSpec, Program, Ramp


@pytest.fixture
def seccm_core():
    """The simulated SECCM (``seccm_simulated.cfg``) in a fresh UniMMCore."""
    yield from loaded_core()


# ---------------------------------------------------------------- defaults
def test_default_plan_is_the_reports_map():
    plan = ScanPlan()
    assert plan.area.kind == "rectangle"
    assert plan.area.bounds() == (-6.0, 6.0, -6.0, 6.0)  # 12 x 12 um centred at 0
    assert plan.measurement.kind == "ca"
    assert plan.measurement.potential_V == 1.0
    assert plan.approach.potential_V == 1.0
    assert plan.potential_limits_V() == (1.0, 1.0)
    g = plan.grid()
    assert g.nx * g.pitch_um == pytest.approx(12.0)
    assert g.ny * g.pitch_um == pytest.approx(12.0)
    assert plan.n_points() == g.nx * g.ny == len(plan.points())
    # the whole program is a 1.0 V hold; the readout lies inside it
    assert {s["hold"] for s in plan.waveform_segments()} == {1.0}
    w0, w1 = plan.readout_window_s()
    assert 0 <= w0 < w1 <= plan.program_duration_s


# --------------------------------------------------------------- round trip
def _custom_plan() -> ScanPlan:
    return ScanPlan(
        name="round trip",
        area=PolygonArea(vertices_um=[(0.0, 0.0), (4.0, 0.5), (1.5, 3.0)]),
        pitch_um=0.4,
        order="shuffled",
        shuffle_seed=7,
        approach=ApproachSettings(potential_V=0.8, threshold_A=5e-12, detection="rise"),
        measurement=CyclicVoltammetry(start_V=0.0, vertex_V=1.5, scan_rate_V_per_s=5.0, cycles=2),
        readout_start_s=0.1,
        readout_end_s=0.2,
        hold_s=0.05,
        retract_um=1.5,
        potentiostat=PotentiostatSettings(sample_rate_Hz=10_000, filter_Hz=2000),
        safety=SafetySettings(z_floor_um=2.0, max_consecutive_failures=3),
        pipette=PipetteGeometry(tip_radius_nm=80.0, footprint_radius_nm=120.0),
    )


def test_yaml_and_json_round_trip(tmp_path):
    plan = _custom_plan()
    assert ScanPlan.from_yaml(plan.to_yaml()) == plan
    assert ScanPlan.model_validate_json(plan.to_json()) == plan
    for name in ("p.yaml", "p.yml", "p.json"):
        plan.save(tmp_path / name)
        assert ScanPlan.load(tmp_path / name) == plan
    # the .json file really is JSON, the .yaml file is not
    json.loads((tmp_path / "p.json").read_text())
    with pytest.raises(json.JSONDecodeError):
        json.loads((tmp_path / "p.yaml").read_text())
    # geometry survives too
    back = ScanPlan.load(tmp_path / "p.yaml")
    np.testing.assert_array_equal(back.points().x_um, plan.points().x_um)


def test_template_parses_back_to_the_default_plan():
    text = plan_template_yaml()
    assert ScanPlan.from_yaml(text) == ScanPlan()
    # every field is documented with its unit where it has one
    assert "pitch_um: 0.3" in text
    assert "unit: um" in text and "unit: V" in text and "unit: Hz" in text
    # the pipette's geometry too, each with its unit
    assert "pipette:" in text
    for line in (
        "tip_radius_nm: 50.0",
        "half_angle_deg: 5.0",
        "electrolyte_S_per_cm: 0.01",
        "footprint_radius_nm: 75.0",
    ):
        assert line in text
    assert "unit: nm" in text and "unit: deg" in text and "unit: S/cm" in text
    # the template of another plan parses back to that plan
    custom = _custom_plan()
    assert ScanPlan.from_yaml(plan_template_yaml(custom)) == custom


def test_plan_file_must_be_a_mapping():
    with pytest.raises(ValueError, match="mapping"):
        ScanPlan.from_yaml("- 1\n- 2\n")
    with pytest.raises(ValidationError, match="pitch_umm"):
        ScanPlan.from_yaml("pitch_umm: 0.5\n")  # typos are not silently ignored


# ----------------------------------------------------------------- geometry
def _centres(plan: ScanPlan) -> set[tuple[float, float]]:
    pts = plan.points()
    return {
        (round(float(x), 9), round(float(y), 9)) for x, y in zip(pts.x_um, pts.y_um, strict=True)
    }


def test_rectangle_geometry():
    plan = ScanPlan(
        area=RectangleArea(center_x_um=1.0, center_y_um=-2.0, width_um=6.0, height_um=4.0),
        pitch_um=0.5,
        order="raster",
    )
    pts = plan.points()
    assert len(pts) == plan.n_points() == 12 * 8
    g = pts.grid
    assert (g.nx, g.ny, g.shape) == (12, 8, (8, 12))
    xs = -2.0 + 0.25 + 0.5 * np.arange(12)  # x from -2 to 4 um
    ys = -4.0 + 0.25 + 0.5 * np.arange(8)  # y from -4 to 0 um
    assert _centres(plan) == {(round(x, 9), round(y, 9)) for x in xs for y in ys}
    # each point is the centre of its pixel
    np.testing.assert_allclose(pts.x_um, xs[pts.col])
    np.testing.assert_allclose(pts.y_um, ys[pts.row])
    # an edges area of the same rectangle gives the same points
    edges = ScanPlan(
        area=EdgesArea(x_min_um=-2.0, x_max_um=4.0, y_min_um=-4.0, y_max_um=0.0),
        pitch_um=0.5,
        order="raster",
    )
    e = edges.points()
    np.testing.assert_allclose(e.x_um, pts.x_um)
    np.testing.assert_allclose(e.y_um, pts.y_um)
    assert edges.grid() == g


def test_rectangle_not_a_multiple_of_the_pitch_stays_centred():
    plan = ScanPlan(area=RectangleArea(center_x_um=3.0, width_um=1.0, height_um=1.0), pitch_um=0.3)
    pts = plan.points()
    assert len(pts) == 9  # round(1.0 / 0.3) = 3 per side
    assert float(np.mean(pts.x_um)) == pytest.approx(3.0)
    assert float(np.mean(pts.y_um)) == pytest.approx(0.0, abs=1e-12)
    assert sorted(set(np.round(pts.x_um, 9))) == pytest.approx([2.7, 3.0, 3.3])


def test_edges_must_be_ordered():
    with pytest.raises(ValidationError, match=r"x_min < x_max.*x \[2.0, 1.0\] um"):
        EdgesArea(x_min_um=2.0, x_max_um=1.0, y_min_um=0.0, y_max_um=1.0)


def test_points_area_lands_each_point_in_its_pixel():
    pts_um = [(0.0, 0.0), (1.0, 0.5), (2.2, 1.1), (0.1, 1.0)]
    plan = ScanPlan(area=PointsArea(points_um=pts_um), pitch_um=0.5, order="raster")
    pts = plan.points()
    assert len(pts) == plan.n_points() == 4
    g = pts.grid
    # pixels centred on the lower-left extreme: x0 = 0 - 0.25, 5 columns, 3 rows
    assert (g.x0_um, g.y0_um, g.nx, g.ny) == pytest.approx((-0.25, -0.25, 5, 3))
    # the points are visited where they are, not at pixel centres
    assert {(float(x), float(y)) for x, y in zip(pts.x_um, pts.y_um, strict=True)} == set(pts_um)
    for x, y, r, c in zip(pts.x_um, pts.y_um, pts.row, pts.col, strict=True):
        cx, cy = g.centers(r, c)
        assert abs(x - cx) <= g.pitch_um / 2 + 1e-12
        assert abs(y - cy) <= g.pitch_um / 2 + 1e-12
    expected_pixels = {(0, 0), (1, 2), (2, 4), (2, 0)}  # (row, col)
    assert set(zip(pts.row.tolist(), pts.col.tolist(), strict=True)) == expected_pixels


def test_polygon_keeps_the_grid_points_inside():
    # a diamond |x| + |y| < 3; at 0.7 um no grid point lies on its edge
    diamond = [(0.0, -3.0), (3.0, 0.0), (0.0, 3.0), (-3.0, 0.0)]
    plan = ScanPlan(area=PolygonArea(vertices_um=diamond), pitch_um=0.7)
    c = -3.0 + 0.7 * np.arange(9)  # pixel centres start at the lower-left extreme
    xx, yy = np.meshgrid(c, c)
    s = np.abs(xx) + np.abs(yy)
    assert np.abs(s - 3.0).min() > 0.05  # the test itself: no ambiguous point
    inside = s < 3.0
    expected = {(round(x, 9), round(y, 9)) for x, y in zip(xx[inside], yy[inside], strict=True)}
    assert _centres(plan) == expected
    assert plan.n_points() == len(expected) == int(inside.sum())
    g = plan.grid()
    assert (g.nx, g.ny) == (9, 9)


def test_polygon_without_grid_points_is_rejected():
    # a tiny triangle: its only grid candidate, (0.1, 0.1), is a vertex, not inside
    with pytest.raises(
        ValidationError, match="no grid point at pitch 1 um lies inside the polygon"
    ):
        ScanPlan(
            area=PolygonArea(vertices_um=[(0.1, 0.1), (0.2, 0.1), (0.15, 0.2)]),
            pitch_um=1.0,
        )


# -------------------------------------------------------------------- order
def _order_plan(order: str, seed: int = 0) -> ScanPlan:
    return ScanPlan(
        area=RectangleArea(width_um=3.0, height_um=2.0),
        pitch_um=0.5,
        order=order,
        shuffle_seed=seed,
    )


def test_raster_serpentine_shuffled_orders():
    raster, serp, shuf = (_order_plan(o).points() for o in ("raster", "serpentine", "shuffled"))
    nx, ny = 6, 4
    pairs = {
        name: list(zip(p.row.tolist(), p.col.tolist(), strict=True))
        for name, p in (("raster", raster), ("serpentine", serp), ("shuffled", shuf))
    }
    # the same points, visited in different orders
    assert set(pairs["raster"]) == set(pairs["serpentine"]) == set(pairs["shuffled"])
    assert len(set(pairs["shuffled"])) == nx * ny
    assert pairs["raster"] != pairs["serpentine"] != pairs["shuffled"] != pairs["raster"]
    # raster: row by row, every row left to right
    assert pairs["raster"] == [(r, c) for r in range(ny) for c in range(nx)]
    # serpentine: every row, alternating direction; each step is to a neighbour
    assert pairs["serpentine"] == [
        (r, c) for r in range(ny) for c in (range(nx) if r % 2 == 0 else reversed(range(nx)))
    ]
    steps = np.hypot(np.diff(serp.x_um), np.diff(serp.y_um))
    np.testing.assert_allclose(steps, 0.5)
    # coordinates follow the order
    np.testing.assert_allclose(serp.x_um, serp.grid.centers(serp.row, serp.col)[0])
    # shuffled: reproducible for a seed, different for another seed
    again = _order_plan("shuffled").points()
    np.testing.assert_array_equal(again.row, shuf.row)
    np.testing.assert_array_equal(again.col, shuf.col)
    other = _order_plan("shuffled", seed=1).points()
    assert list(zip(other.row, other.col, strict=True)) != pairs["shuffled"]


# ----------------------------------------------------------------- estimate
def test_estimate_time_is_positive_and_scales_with_points():
    sizes = (2.0, 4.0, 8.0)
    plans = [ScanPlan(area=RectangleArea(width_um=w, height_um=w), pitch_um=0.5) for w in sizes]
    n = np.array([p.n_points() for p in plans], dtype=float)
    t = np.array([p.estimate_time_s() for p in plans])
    assert n.tolist() == [16, 64, 256]
    assert (t > 0).all()
    assert (np.diff(t) > 0).all()
    per_point = np.diff(t) / np.diff(n)
    assert per_point[0] == pytest.approx(per_point[1], rel=1e-9)  # linear in the points
    # a point costs at least its program; a longer program costs more
    assert per_point[0] > plans[0].program_duration_s
    longer = plans[1].model_copy(update={"measurement": Chronoamperometry(duration_s=0.1)})
    assert longer.estimate_time_s() - t[1] == pytest.approx(64 * 0.08, rel=1e-9)


# --------------------------------------------------------------- validation
def test_negative_pitch_is_rejected():
    with pytest.raises(ValidationError) as e:
        ScanPlan(pitch_um=-0.5)
    msg = str(e.value)
    assert "pitch_um" in msg and "greater than 0" in msg and "-0.5" in msg


def test_readout_window_outside_the_program_is_rejected():
    with pytest.raises(
        ValidationError,
        match=r"readout window \[0.01, 0.05\] s must lie inside the program"
        r" \[0, 0.02\] s",
    ):
        ScanPlan(readout_start_s=0.01, readout_end_s=0.05)
    with pytest.raises(ValidationError, match="readout window"):
        ScanPlan(readout_start_s=-0.01)
    with pytest.raises(ValidationError, match="readout window"):
        ScanPlan(readout_start_s=0.015, readout_end_s=0.01)
    # on the edges is fine
    ScanPlan(readout_start_s=0.0, readout_end_s=0.02)


def test_filter_above_half_the_sample_rate_is_rejected():
    with pytest.raises(
        ValidationError,
        match=r"filter 3000 Hz is above half the sample rate \(2500 Hz\)",
    ):
        ScanPlan(potentiostat=PotentiostatSettings(sample_rate_Hz=5000, filter_Hz=3000))
    ScanPlan(potentiostat=PotentiostatSettings(sample_rate_Hz=5000, filter_Hz=2500))


def test_pitch_below_twice_the_footprint_warns():
    with pytest.warns(
        UserWarning,
        match=r"pitch 0\.2 um is below 0\.3 um, twice the droplet footprint \(0\.15 um across\)",
    ):
        ScanPlan(pitch_um=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScanPlan(pitch_um=0.3)  # exactly 2x: no warning


@pytest.mark.parametrize(
    ("plan_kw", "message"),
    [
        (
            {"area": RectangleArea(center_x_um=48.0, width_um=6.0)},
            r"scan area X up to 51 um is beyond the stage travel: "
            r"PiezoXY X maximum is 50 um",
        ),
        (
            {"area": EdgesArea(x_min_um=0.0, x_max_um=5.0, y_min_um=-52.0, y_max_um=-40.0)},
            r"scan area Y from -52 um is beyond the stage travel: "
            r"PiezoXY Y minimum is -50 um",
        ),
        (
            {"measurement": Chronoamperometry(potential_V=6.0)},
            r"potential 6 V is beyond the potentiostat's compliance \(maximum 5 V\)",
        ),
        (
            {"measurement": Staircase(start_V=-5.5, end_V=1.0)},
            r"potential -5.5 V is beyond the potentiostat's compliance "
            r"\(minimum -5 V\)",
        ),
        (
            {"approach": ApproachSettings(potential_V=5.2)},
            r"potential 5.2 V is beyond the potentiostat's compliance \(maximum 5 V\)",
        ),
        (
            {"potentiostat": PotentiostatSettings(label="Potentiostat2")},
            r"potentiostat device 'Potentiostat2' is not loaded; "
            r"loaded devices: \[.*'Potentiostat'",
        ),
    ],
    ids=[
        "x-travel",
        "y-travel",
        "compliance-max",
        "compliance-min",
        "approach-potential",
        "label",
    ],
)
def test_plan_that_does_not_fit_the_rig_changes_nothing(seccm_core, tmp_path, plan_kw, message):
    core = seccm_core
    core.setXYPosition(3.0, -2.0)
    core.waitForSystem()
    core.setPosition(40.0)
    core.waitForSystem()
    plan = ScanPlan(area=RectangleArea(width_um=2.0, height_um=2.0), pitch_um=0.5).model_copy(
        update=plan_kw
    )
    plan = ScanPlan.model_validate(plan.model_dump())
    before = rig_state(core)
    with pytest.raises(PlanError, match=message):
        check_plan_against_core(plan, core)
    out = tmp_path / "bad.seccm.zarr"
    with pytest.raises(PlanError, match=message):
        Scan.create(core, plan, out)
    with pytest.raises(PlanError, match=message):
        run_scan(core, plan, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    after = rig_state(core)
    assert after == before  # nothing moved, cell and potential as they were, no time passed
    assert after["xy"] == pytest.approx((3.0, -2.0))


def test_area_on_the_travel_limit_is_accepted(seccm_core):
    plan = ScanPlan(
        area=EdgesArea(x_min_um=44.0, x_max_um=50.0, y_min_um=-50.0, y_max_um=-44.0),
        pitch_um=0.5,
    )
    check_plan_against_core(plan, seccm_core)


def test_invalid_field_values_name_the_field():
    cases = [
        ({"retract_um": 0.0}, "retract_um"),
        ({"approach": {"slow_speed_um_per_s": 50}}, "slow_speed_um_per_s"),
        ({"measurement": {"kind": "ca", "duration_s": -1}}, "duration_s"),
        ({"measurement": {"kind": "eis"}}, "measurement"),
        ({"order": "spiral"}, "order"),
        ({"potentiostat": {"sample_rate_Hz": 50}}, "sample_rate_Hz"),
    ]
    for data, field in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValidationError, match=field):
                ScanPlan.model_validate(data)


def test_samples_per_point_matches_program():
    plan = ScanPlan(
        measurement=Staircase(start_V=0.0, end_V=1.0, steps=11, hold_s=0.02),
        hold_s=0.01,
    )
    fs = plan.potentiostat.sample_rate_Hz
    assert plan.program_duration_s == pytest.approx(0.23)
    assert plan.samples_per_point() == round(0.23 * fs)
    # the readout defaults to the second half of the program after the hold
    w0, w1 = plan.readout_window_s()
    assert w0 == pytest.approx(0.01 + 0.11)
    assert w1 == pytest.approx(0.23)
    assert math.isclose(plan.potential_limits_V()[1], 1.0)


# ------------------------------------------- plans that could never measure
def test_plans_that_could_never_measure_are_refused_by_name() -> None:
    from pydantic import ValidationError

    from napari_seccm.acquisition.plan import (
        ApproachSettings,
        CyclicVoltammetry,
        LinearSweep,
        PotentiostatSettings,
    )

    with pytest.raises(ValidationError, match=r"start_V and end_V are both 0\.5 V"):
        LinearSweep(start_V=0.5, end_V=0.5)
    with pytest.raises(ValidationError, match=r"start_V and vertex_V are both 0 V"):
        CyclicVoltammetry(start_V=0.0, vertex_V=0.0)
    with pytest.raises(ValidationError, match=r"50000 pA is at or above the full scale .*10000 pA"):
        ScanPlan(
            approach=ApproachSettings(threshold_A=5e-8),
            potentiostat=PotentiostatSettings(current_range_A=1e-8),
        )
    with pytest.raises(ValidationError, match=r"0\.5 samples at 5000 Hz: at least one sample"):
        ScanPlan(measurement={"kind": "ca", "potential_V": 1.0, "duration_s": 1e-4})
    # the same threshold with a larger range is fine
    ScanPlan(
        approach=ApproachSettings(threshold_A=5e-8),
        potentiostat=PotentiostatSettings(current_range_A=1e-6),
    )


# ------------------------------------------------------------ the program
def test_each_measurement_makes_its_program() -> None:
    from napari_seccm.acquisition.plan import LinearSweep

    assert Chronoamperometry(potential_V=0.8, duration_s=0.05).program() == Program(
        [Hold(0.8, 0.05)]
    )
    assert LinearSweep(start_V=0.0, end_V=-1.0, scan_rate_V_per_s=4.0).program() == Program(
        [Ramp(0.0, -1.0, 0.25)]
    )
    cv = CyclicVoltammetry(start_V=0.2, vertex_V=1.2, scan_rate_V_per_s=5.0, cycles=3)
    assert cv.program() == Program.cyclic_voltammetry(0.2, 1.2, 5.0, 3)
    assert len(cv.program().segments) == 6
    st = Staircase(start_V=0.0, end_V=1.0, steps=5, hold_s=0.01)
    assert st.program() == Program([Hold(float(v), 0.01) for v in st.potentials_V()])
    # the JSON segments are the program's
    for m in (cv, st):
        assert m.segments() == m.program().to_segments()


def test_plan_program_and_its_thin_wrappers() -> None:
    plan = _custom_plan()  # a CV of 2 cycles after a 0.05 s hold, at 10 kHz
    prog = plan.program()
    assert prog.segments[0] == Hold(0.0, 0.05)
    assert Program(prog.segments[1:]) == plan.measurement.program()
    assert plan.waveform_segments() == prog.to_segments()
    assert plan.waveform_json() == prog.to_json()
    assert Program.from_json(plan.waveform_json()) == prog
    assert plan.program_duration_s == prog.duration_s == pytest.approx(0.05 + 4 * 0.3)
    fs = plan.potentiostat.sample_rate_Hz
    assert plan.samples_per_point() == prog.n_samples(fs) == prog.sample(fs).size
    assert plan.potential_limits_V() == (0.0, 1.5)
    # no settling hold: the measurement's program itself
    assert ScanPlan().program() == ScanPlan().measurement.program()
    # the plan's probe
    probe = plan.probe_spec()
    assert probe == ProbeSpec(potentiostat="Potentiostat", pipette=plan.pipette)
    assert probe.z_stage == ""  # the core's focus device


def test_non_finite_potentials_are_refused_by_value() -> None:
    with pytest.raises(ValidationError, match=r"potential_V must be finite \(V\), got inf"):
        ScanPlan(measurement=Chronoamperometry(potential_V=math.inf))
    with pytest.raises(ValidationError, match=r"start_V must be finite \(V\), got nan"):
        Staircase(start_V=math.nan)


# ------------------------------------------------------------ the pipette
def test_pipette_is_part_of_the_plan() -> None:
    plan = ScanPlan()
    assert plan.pipette == PipetteGeometry()
    assert plan.pipette.footprint_radius_nm == 75.0
    data = json.loads(_custom_plan().to_json())
    assert data["pipette"]["tip_radius_nm"] == 80.0
    assert data["pipette"]["footprint_radius_nm"] == 120.0
    with pytest.raises(ValidationError, match="footprint_radius_nm"):
        ScanPlan(pipette={"footprint_radius_nm": -5.0})
    with pytest.raises(ValidationError, match="tip_diameter_nm"):
        ScanPlan(pipette={"tip_diameter_nm": 100.0})


def test_plans_of_earlier_versions_still_load() -> None:
    """A store's plan from before the pipette (and before the check on the two
    potentials of a sweep) reads back; the missing pipette is the default."""
    old = json.loads(ScanPlan().to_json())
    del old["pipette"]
    assert ScanPlan.model_validate(old).pipette == PipetteGeometry()
    assert ScanPlan.model_validate(old, context={"stored": True}) == ScanPlan()
    # a sweep between two equal potentials: readable from a store, never runnable
    old["measurement"] = {"kind": "lsv", "start_V": 0.5, "end_V": 0.5, "scan_rate_V_per_s": 2.0}
    stored = ScanPlan.model_validate(old, context={"stored": True})
    assert stored.measurement.start_V == stored.measurement.end_V == 0.5
    with pytest.raises(ValueError, match=r"start_V and end_V are both 0\.5 V"):
        stored.program()
    with pytest.raises(ValidationError, match=r"start_V and end_V are both 0\.5 V"):
        ScanPlan.model_validate(old)


# ------------------------------------------------------------- useq-schema
@settings(max_examples=60, deadline=None)
@given(
    w=st.floats(0.5, 20.0),
    h=st.floats(0.5, 20.0),
    cx=st.floats(-20.0, 20.0),
    cy=st.floats(-20.0, 20.0),
    pitch=st.sampled_from([0.3, 0.5, 0.75, 1.0, 2.0]),
    order=st.sampled_from(["serpentine", "raster"]),
)
def test_rectangle_grid_is_the_useq_grid_plan(w, h, cx, cy, pitch, order):
    """The engine's numpy grid and useq-schema's GridFromEdges agree on every
    point of a rectangle map; serpentine visits hop one pitch at a time, as
    useq's row_wise_snake does."""
    plan = ScanPlan(
        area=RectangleArea(width_um=w, height_um=h, center_x_um=cx, center_y_um=cy),
        pitch_um=pitch,
        order=order,
    )
    pts = plan.points()
    ours = np.column_stack((pts.x_um, pts.y_um))
    theirs = np.array([(p.x, p.y) for p in plan.useq_grid_plan()])
    assert ours.shape == theirs.shape
    key = lambda a: a[np.lexsort((a[:, 0].round(6), a[:, 1].round(6)))]  # noqa: E731
    np.testing.assert_allclose(key(ours), key(theirs), atol=1e-6)
    if order == "serpentine" and len(ours) > 1:
        for a in (ours, theirs):
            steps = np.hypot(*np.diff(a, axis=0).T)
            assert steps.max() <= pitch * (1 + 1e-6)
