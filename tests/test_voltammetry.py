"""Voltammetric maps browsed by potential (issue 13, item 2).

The segment table is checked against the model's own sample bookkeeping
(``Program.segment_index``, ``Program.sample``), over random CV programs
(hypothesis). The maps are checked on an analytic store written here with
the store API: every point's current is a known function of the programmed
potential, the sweep direction and the cycle, so the map at any E in any
segment is known exactly; some points did not land and one is not measured.
Exports are read back with the GSF parser of ``test_export``; movies with
Pillow and imageio-ffmpeg. The napari layer, its slider and the Inspector's
marker run in a real viewer under Xvfb on a real simulated CV scan.
"""

from __future__ import annotations

import gc
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_export import read_gsf

from napari_seccm.acquisition.plan import (
    Chronoamperometry,
    CyclicVoltammetry,
    PotentiostatSettings,
    RectangleArea,
    ScanPlan,
)
from napari_seccm.acquisition.store import NO_CONTACT, OK, PointRecord, ScanStore
from napari_seccm.analysis.voltammetry import (
    PotentialStack,
    VoltammetryTable,
    export_potential_map,
    map_at,
)
from napari_seccm.cli import main
from napari_seccm.model import Program

# ------------------------------------------------------------ analytic store
NX, NY, PITCH = 7, 5, 0.5
FS = 2000.0
HOLD_S = 0.01  # a settling hold before the CV: in no segment
CV = {"start_V": -0.2, "vertex_V": 0.8, "scan_rate_V_per_s": 5.0, "cycles": 2}
NOT_OK = (3, 17)  # landings without contact
PENDING_POINT = 20  # never measured


def truth_A(E: np.ndarray, direction: np.ndarray, cycle: np.ndarray, i: int) -> np.ndarray:
    """The analytic current of point ``i``: a conductance that differs from
    point to point, a hysteresis that changes sign with the sweep direction,
    and a shift per cycle (so a wrong segment or cycle cannot pass)."""
    g = (1.0 + 0.1 * i) * 1e-9
    return g * E + 0.3e-9 * direction + 0.05e-9 * cycle


def cv_plan(**measurement: Any) -> ScanPlan:
    return ScanPlan(
        area=RectangleArea(width_um=NX * PITCH, height_um=NY * PITCH, center_x_um=1.0),
        pitch_um=PITCH,
        hold_s=HOLD_S,
        measurement=CyclicVoltammetry(**{**CV, **measurement}),
        potentiostat=PotentiostatSettings(sample_rate_Hz=FS),
    )


def sample_truth(plan: ScanPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample of the plan's CV: potential, direction, cycle, from the
    model's own segment numbering (program segment 0 is the settling hold)."""
    prog = plan.program()
    E = prog.sample(FS)
    seg = prog.segment_index(FS)
    ramp = seg - 1  # -1 on the hold
    direction = np.where(ramp % 2 == 0, 1.0, -1.0) * np.sign(CV["vertex_V"] - CV["start_V"])
    return E, np.where(ramp < 0, 0.0, direction), np.maximum(ramp, 0) // 2


def write_analytic_store(path: Path, plan: ScanPlan) -> Path:
    st = ScanStore.create(path, plan)
    E, d, c = sample_truth(plan)
    pts = st.points()
    recs = []
    for i in range(st.n_points):
        if i == PENDING_POINT:
            continue
        cur = truth_A(E, d, c, i).astype(np.float32)
        recs.append(
            PointRecord(
                i,
                NO_CONTACT if i in NOT_OK else OK,
                float(cur.mean()),
                1.0,
                float(pts["x_um"][i]),
                float(pts["y_um"][i]),
                float(i),
                0.0,
                cur,
                E.astype(np.float32),
            )
        )
    st.write_points(recs)
    st.update_meta(status="complete")
    st.close()
    return path


@pytest.fixture(scope="module")
def cv_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_analytic_store(tmp_path_factory.mktemp("volt") / "cv.seccm.zarr", cv_plan())


@pytest.fixture(scope="module")
def ca_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    plan = ScanPlan(
        area=RectangleArea(width_um=1.0, height_um=1.0),
        pitch_um=0.5,
        measurement=Chronoamperometry(potential_V=1.0, duration_s=0.01),
    )
    path = tmp_path_factory.mktemp("volt") / "ca.seccm.zarr"
    ScanStore.create(path, plan).close()
    return path


def expected_map(store: Path, E: float, segment: int) -> np.ndarray:
    """The analytic map at E in a segment (NaN where not ok), from the truth."""
    d = 1.0 if segment % 2 == 0 else -1.0
    with ScanStore.open(store) as s:
        pts = s.points()
        out = np.full((s.grid.ny, s.grid.nx), np.nan)
    for i in range(len(pts["row"])):
        if i in NOT_OK or i == PENDING_POINT:
            continue
        out[pts["row"][i], pts["col"][i]] = truth_A(
            np.array(E), np.array(d), np.array(segment // 2), i
        )
    return out


# ------------------------------------------------------------ segment table
def test_cv_segments_and_cycles_come_from_the_program() -> None:
    prog = Program.cyclic_voltammetry(0.0, 1.0, 2.0, cycles=3).with_pre_hold(0.1)
    t = VoltammetryTable.from_program(prog, 1000.0)
    assert [(s.cycle, s.direction, s.start_V, s.end_V) for s in t.sweeps] == [
        (c, d, a, b) for c in range(3) for d, a, b in ((1, 0.0, 1.0), (-1, 1.0, 0.0))
    ]
    # the pre-hold (100 samples) belongs to no segment
    assert [(s.sample_start, s.sample_stop) for s in t.sweeps][:2] == [(100, 600), (600, 1100)]
    assert t.n_cycles == 3 and t.n_samples == 3100
    assert t.lines()[1] == "segment 1 (cycle 0): 1 -> 0 V, falling, 2 V/s"


def test_a_cycle_that_starts_mid_range_closes_where_it_began() -> None:
    """0 -> 1 -> -1 -> 0, twice: three segments per cycle; the two rising
    ramps that meet at 0 between the cycles are not merged."""
    one = [{"ramp": [0, 1], "t": 0.5}, {"ramp": [1, -1], "t": 1}, {"ramp": [-1, 0], "t": 0.5}]
    t = VoltammetryTable.from_program(Program(one * 2), 1000.0)
    assert [(s.cycle, s.start_V, s.end_V) for s in t.sweeps] == [
        (0, 0, 1),
        (0, 1, -1),
        (0, -1, 0),
        (1, 0, 1),
        (1, 1, -1),
        (1, -1, 0),
    ]
    # two ramps one way at different rates make one monotonic segment
    t2 = VoltammetryTable.from_program(
        Program([{"ramp": [0, 0.5], "t": 0.5}, {"ramp": [0.5, 1], "t": 0.1}]), 1000.0
    )
    assert len(t2.sweeps) == 1 and (t2.sweeps[0].start_V, t2.sweeps[0].end_V) == (0, 1)
    # a segment that does not reach a grid potential has no value there
    assert t.grid_weights(0, 0) is None  # E = -1 V, segment 0 spans 0..1 V


def test_staircase_steps_count_by_their_settled_half() -> None:
    prog = Program.staircase(0.0, 1.0, 11, 0.02).with_pre_hold(0.05)
    t = VoltammetryTable.from_program(prog, 1000.0)
    (sw,) = t.sweeps
    assert sw.kind == "staircase" and sw.node_V.size == 11
    np.testing.assert_allclose(t.grid_V, np.linspace(0, 1, 11))
    # at step 3 (0.3 V): the last 10 of its 20 samples; the pre-hold merges into step 0
    cols, w = sw.weights(0.3)
    start3 = 50 + 3 * 20
    np.testing.assert_array_equal(np.sort(cols), np.arange(start3 + 10, start3 + 20))
    np.testing.assert_allclose(w, 0.1)
    cols0, _ = sw.weights(0.0)
    np.testing.assert_array_equal(np.sort(cols0), np.arange(60, 70))  # step 0's own last half
    # halfway between two steps: half of each
    cols, w = sw.weights(0.35)
    assert w.sum() == pytest.approx(1.0) and cols.size == 20


def test_a_held_potential_has_no_segment() -> None:
    t = VoltammetryTable.from_program(Program.chronoamperometry(1.0, 0.1), 1000.0)
    assert not t.is_voltammetric and t.grid_V.size == 0
    with pytest.raises(ValueError, match="no sweep"):
        t.find(1.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.floats(-2.0, 2.0),
    delta=st.floats(0.05, 2.0),
    falling=st.booleans(),
    rate=st.floats(0.1, 50.0),
    cycles=st.integers(1, 5),
    fs=st.floats(200.0, 20000.0),
    hold=st.sampled_from([0.0, 0.003, 0.1]),
    frac=st.floats(-0.1, 1.1),
)
def test_cv_table_matches_the_program_sample_by_sample(
    start: float,
    delta: float,
    falling: bool,
    rate: float,
    cycles: int,
    fs: float,
    hold: float,
    frac: float,
) -> None:
    vertex = start - delta if falling else start + delta
    prog = Program.cyclic_voltammetry(start, vertex, rate, cycles).with_pre_hold(hold)
    counts = prog.sample_counts(fs)
    ramps = counts[1:] if hold else counts
    assume(min(ramps) >= 2 and sum(counts) <= 200_000)
    t = VoltammetryTable.from_program(prog, fs)
    pot = prog.sample(fs)
    seg_of = prog.segment_index(fs)
    assert len(t.sweeps) == 2 * cycles
    first = -1 if falling else 1
    for k, sw in enumerate(t.sweeps):
        assert sw.cycle == k // 2
        assert sw.direction == (first if k % 2 == 0 else -first)
        assert (sw.start_V, sw.end_V) == ((start, vertex) if k % 2 == 0 else (vertex, start))
        # exactly the samples of program segment k (+1 after the settling hold)
        np.testing.assert_array_equal(
            np.arange(sw.sample_start, sw.sample_stop),
            np.flatnonzero(seg_of == k + (1 if hold else 0)),
        )
        # interpolating the programmed potential itself gives E back (the
        # end samples sit half a sample inside the sweep: clamped there)
        E = sw.lo_V + frac * (sw.hi_V - sw.lo_V)
        if not sw.contains(E):
            with pytest.raises(ValueError, match=r"outside segment .* choose E in \["):
                sw.weights(E)
            continue
        cols, w = sw.weights(E)
        assert w.sum() == pytest.approx(1.0) and (w > 0).all() and cols.size <= 2
        seg_pot = pot[sw.sample_start : sw.sample_stop]
        want = min(max(E, seg_pot.min()), seg_pot.max())
        assert pot[cols] @ w == pytest.approx(want, abs=1e-9 * max(1.0, abs(want)))
        assert cols.min() >= sw.sample_start and cols.max() < sw.sample_stop
    g = t.grid_V
    assert g[0] == min(start, vertex) and g[-1] == pytest.approx(max(start, vertex))
    np.testing.assert_allclose(np.diff(g), t.step_V)
    assert 2 <= g.size <= 4096


# -------------------------------------------------------------------- maps
@pytest.mark.parametrize(
    ("E", "segment"), [(0.3, 0), (0.3, 1), (0.3, 2), (0.3, 3), (0.77, 1), (-0.15, 2)]
)
def test_map_at_a_potential_is_the_analytic_map(cv_store: Path, E: float, segment: int) -> None:
    m = map_at(cv_store, E, segment)
    want = expected_map(cv_store, E, segment)
    assert m["segment"] == segment and m["cycle"] == segment // 2
    np.testing.assert_array_equal(np.isnan(m["current_A"]), np.isnan(want))
    np.testing.assert_allclose(m["current_A"], want, rtol=2e-6, atol=1e-16)
    assert np.isnan(m["current_A"]).sum() == len(NOT_OK) + 1  # no landing, not measured


def test_map_at_without_a_segment_takes_the_first_that_reaches_e(cv_store: Path) -> None:
    assert map_at(cv_store, 0.5)["segment"] == 0


def test_a_bad_potential_or_segment_names_the_value_and_the_range(
    cv_store: Path, ca_store: Path
) -> None:
    with pytest.raises(
        ValueError, match=r"cv.seccm.zarr: potential 1.2 V is outside .*\[-0.2, 0.8\] V"
    ):
        map_at(cv_store, 1.2)
    with pytest.raises(ValueError, match=r"segment 4 does not exist: .*segments 0-3"):
        map_at(cv_store, 0.3, 4)
    with pytest.raises(ValueError, match=r"potential nan V is outside segment 0"):
        map_at(cv_store, math.nan, 0)
    with pytest.raises(ValueError, match="no sweep"):
        map_at(ca_store, 1.0)
    with pytest.raises(ValueError, match="no potential axis"):
        PotentialStack(ca_store)


def test_the_lazy_stack_gives_the_maps_and_reads_each_chunk_once(cv_store: Path) -> None:
    stack = PotentialStack(cv_store, factor=1e9)
    table = stack.table
    assert stack.shape == (4, table.grid_V.size, NY, NX)
    assert stack._bands.reads == 0  # opening reads no trace
    last = table.grid_V.size - 1
    for seg, step in ((0, 5), (1, 100), (3, last), (2, 0)):
        E = float(table.grid_V[step])
        sw = table.sweeps[seg]
        # the sweep's ends lie half a sample outside its samples: the end sample there
        E = min(max(E, sw.node_V.min()), sw.node_V.max())
        np.testing.assert_allclose(
            stack[seg, step], expected_map(cv_store, E, seg) * 1e9, rtol=2e-6, atol=1e-7
        )
    assert stack._bands.reads == 1  # the traces fit the budget: read once, then kept
    # napari's indexing: slices, negative indices, a partial y/x window
    np.testing.assert_array_equal(stack[1, -1], stack.frame(1, last))
    part = stack[:, 7, 1:4, ::2]
    assert part.shape == (4, 3, 4)
    np.testing.assert_array_equal(part[2], stack.frame(2, 7)[1:4, ::2])
    assert stack[0:2, 3:5].shape == (2, 2, NY, NX)
    with pytest.raises(IndexError):
        stack[4, 0]
    lo, hi = stack.contrast_limits()
    assert np.nanmin(stack[:, ::50]) - 0.05 <= lo < hi <= np.nanmax(stack[:, ::50]) + 0.05


def test_a_small_cache_keeps_memory_bounded_and_the_same_maps(cv_store: Path) -> None:
    big = PotentialStack(cv_store)
    n = big.store.n_points
    small = PotentialStack(cv_store, cache_bytes=4 * n * 64)  # 16 columns a band
    for seg, step in ((0, 0), (1, 50), (3, 120), (0, 0)):
        np.testing.assert_array_equal(small[seg, step], big[seg, step])
    assert small._bands.width == 16 and len(small._bands.bands) <= 4
    assert small._bands.reads >= 3


def test_reader_adds_the_potential_layer_only_for_a_sweeping_store(
    cv_store: Path, ca_store: Path
) -> None:
    from napari_seccm.io.layers import VOLTAMMETRIC_AXES, scan_layer_data

    assert [t[1]["metadata"]["seccm"]["kind"] for t in scan_layer_data(ca_store)] == [
        "contact_height",
        "current",
    ]
    layers = scan_layer_data(cv_store)
    data, kw, kind = layers[-1]
    assert kind == "image" and isinstance(data, PotentialStack)
    assert kw["axis_labels"] == VOLTAMMETRIC_AXES
    g = data.grid_V
    # the E axis in world units is the potential: step j sits at grid_V[j]
    assert kw["scale"][1] == pytest.approx(g[1] - g[0])
    assert kw["translate"][1] == pytest.approx(g[0])
    assert kw["translate"][1] + 37 * kw["scale"][1] == pytest.approx(g[37])
    assert kw["name"] == "cv current by potential (nA)"
    assert len(kw["metadata"]["seccm"]["segments"]) == 4


# ------------------------------------------------------------------ export
def test_export_potential_writes_the_map_and_its_title(cv_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "at.gsf"
    assert (
        main(["export", str(cv_store), "--out", str(out), "--potential", "0.3", "--segment", "1"])
        == 0
    )
    meta, data = read_gsf(out)
    want = expected_map(cv_store, 0.3, 1)
    np.testing.assert_allclose(data, want, rtol=2e-6, atol=1e-16)
    assert meta["ZUnits"] == "A"
    assert "0.3 V" in meta["Title"] and "segment 1 (cycle 0, falling" in meta["Title"]
    # the per-point table: one current per point, NaN where not ok
    csv_out = tmp_path / "at.csv"
    export_potential_map(cv_store, csv_out, 0.3, 1)
    rows = np.genfromtxt(csv_out, delimiter=",", names=True, dtype=None, encoding="utf-8")
    with ScanStore.open(cv_store) as s:
        pts = s.points()
    got = rows["current_A"]
    np.testing.assert_allclose(got, want[pts["row"], pts["col"]], rtol=2e-6, atol=1e-16)
    assert set(rows["segment"]) == {1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--potential", "0.9"],
            r"potential 0.9 V is outside the program's sweeps: choose E in \[-0.2, 0.8\] V",
        ),
        (
            ["--potential", "0.3", "--segment", "7"],
            r"segment 7 does not exist: this program has segments 0-3",
        ),
        (["--segment", "1"], r"--segment goes with --potential"),
        (["--potential", "0.3", "--channel", "conductance"], r"--potential maps the current"),
        (["--potential", "abc"], r"--potential takes a number \(V\), got 'abc'"),
    ],
)
def test_export_potential_refuses_bad_input_and_writes_nothing(
    cv_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "bad.gsf"
    try:
        rc = main(["export", str(cv_store), "--out", str(out), *args])
    except SystemExit as e:  # argparse's own refusal of a non-number
        rc = e.code
    assert rc == 2
    assert re.search(message, capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_export_potential_on_a_held_potential_store_says_why(
    ca_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ca.gsf"
    assert main(["export", str(ca_store), "--out", str(out), "--potential", "1.0"]) == 2
    assert "no sweep (one potential held)" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------- movie
def test_movie_gif_has_one_frame_per_potential(
    cv_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    out = tmp_path / "map.gif"
    assert main(["movie", str(cv_store), "--out", str(out), "--frames", "6", "--fps", "5"]) == 0
    assert "24 frames of 640 x 520 px at 5 frames/s" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.n_frames == 24 and im.size == (640, 520)
        assert im.info["duration"] == 200
        # frames differ: the map changes with the potential
        im.seek(0)
        f0 = np.asarray(im.convert("RGB")).copy()
        im.seek(5)
        f5 = np.asarray(im.convert("RGB"))
        assert (f0 != f5).any()
    one = tmp_path / "one.gif"
    assert (
        main(
            [
                "movie",
                str(cv_store),
                "--out",
                str(one),
                "--segment",
                "3",
                "--frames",
                "4",
                "--clim",
                "0",
                "2",
            ]
        )
        == 0
    )
    with Image.open(one) as im:
        assert im.n_frames == 4


def test_movie_mp4_and_its_refusals(
    cv_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "map.mp4"
    assert main(["movie", str(cv_store), "--out", str(out), "--segment", "0", "--frames", "8"]) == 0
    frames = imageio_ffmpeg.read_frames(str(out))
    meta = next(frames)
    assert tuple(meta["size"]) == (640, 520)
    assert sum(1 for _ in frames) == 8
    capsys.readouterr()
    # bad input: a clear message, nothing written
    for args, message in (
        (["--out", str(tmp_path / "m.avi")], "a movie is written as .gif or .mp4"),
        (["--out", str(tmp_path / "m.gif"), "--segment", "9"], "segment 9 does not exist"),
        (["--out", str(tmp_path / "m.gif"), "--clim", "2", "1"], "colour limits need LO < HI"),
        (["--out", str(out)], "exists; choose another name or pass --overwrite"),
    ):
        assert main(["movie", str(cv_store), *args]) == 2
        assert message in capsys.readouterr().err
    # without imageio-ffmpeg an MP4 is refused, saying what to install
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert main(["movie", str(cv_store), "--out", str(tmp_path / "n.mp4")]) == 2
    assert "needs imageio-ffmpeg" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.mp4"]


# --------------------------------------------------------- napari (Xvfb)
@pytest.fixture(scope="module")
def scanned_cv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real simulated hopping scan with a two-cycle CV at every landing."""
    from _scan_helpers import scan_to_store, small_plan

    plan = small_plan(
        width_um=3.0,
        pitch_um=0.5,
        measurement=CyclicVoltammetry(start_V=0.0, vertex_V=1.0, scan_rate_V_per_s=10.0, cycles=2),
    )
    return scan_to_store(tmp_path_factory.mktemp("cvscan") / "cvscan.seccm.zarr", plan)


def _shown(layer: Any) -> np.ndarray:
    """What napari is showing of an image layer (its current slice)."""
    return np.asarray(layer._slice.image.raw)


@pytest.mark.gui
def test_napari_browses_a_scanned_cv_by_potential_and_the_inspector_follows(
    make_napari_viewer: Any, qtbot: Any, scanned_cv: Path
) -> None:
    viewer = make_napari_viewer(show=False)
    viewer.open(str(scanned_cv), plugin="napari-seccm")
    kinds = [lay.metadata["seccm"]["kind"] for lay in viewer.layers]
    assert kinds == ["contact_height", "current", "voltammetric"]
    layer = viewer.layers[-1]
    assert isinstance(layer.data, PotentialStack)
    assert tuple(viewer.dims.axis_labels) == ("segment", "E (V)", "y", "x")
    assert [str(u) for u in layer.units][1:] == ["volt", "micrometer", "micrometer"]
    table = layer.data.table
    assert len(table.sweeps) == 4 and table.n_cycles == 2
    # a slider step: the world coordinate is the potential, the image the map there
    step = 300
    viewer.dims.current_step = (2, step, 0, 0)
    E = float(table.grid_V[step])
    assert viewer.dims.point[1] == pytest.approx(E)
    qtbot.waitUntil(lambda: _shown(layer).shape == (6, 6), timeout=5000)
    want = map_at(scanned_cv, E, 2)["current_A"] * 1e9
    qtbot.waitUntil(
        lambda: np.allclose(_shown(layer), want, rtol=1e-5, equal_nan=True), timeout=5000
    )
    # the simulated film conducts: at E = 0.6 V the current is positive and
    # matches the recorded samples nearest that potential (an independent check)
    with ScanStore.open(scanned_cv) as s:
        tr = s.trace(7)
        ok = s.array("results/status")[:] == OK
        r, c = int(s.points()["row"][7]), int(s.points()["col"][7])
    assert ok.all()
    sw = table.sweeps[2]
    seg_E = tr["potential_V"][sw.sample_start : sw.sample_stop]
    seg_I = tr["current_A"][sw.sample_start : sw.sample_stop]
    near = np.argsort(np.abs(seg_E - E))[:2]
    assert want[r, c] * 1e-9 == pytest.approx(seg_I[near].mean(), rel=0.02)

    # the Inspector: the clicked point's voltammogram, marker at the slider's E
    _, insp = viewer.window.add_plugin_dock_widget("napari-seccm", "Inspector")
    y, x = layer.data_to_world((2, step, r, c))[-2:]
    facts = insp.inspect_world((viewer.dims.point[0], viewer.dims.point[1], y, x))
    assert facts["index"] == 7 and facts["segment"] == 2 and facts["cycle"] == 1
    marker = insp._volt["marker"]
    assert marker.get_xdata()[0] == pytest.approx(E)
    assert facts["current_at_potential_A"] == pytest.approx(want[r, c] * 1e-9, rel=1e-5)
    from napari_seccm.widgets.inspector import _text_overlay

    text = _text_overlay(viewer).text
    assert f"E = {E:.3f} V" in text and "segment 2 (cycle 1" in text
    # the slider moves: the marker follows, in another segment the highlight too
    viewer.dims.current_step = (2, 100, 0, 0)
    assert marker.get_xdata()[0] == pytest.approx(float(table.grid_V[100]))
    viewer.dims.current_step = (1, 100, 0, 0)
    assert insp.last["segment"] == 1 and insp.last["cycle"] == 0
    new_marker = insp._volt["marker"]
    assert new_marker.get_xdata()[0] == pytest.approx(float(table.grid_V[100]))
    assert "segment 1" in insp.ax_iv.get_title()
    highlighted = [ln for ln in insp.ax_iv.get_lines() if ln.get_label() == "segment 1"]
    assert len(highlighted) == 1
    np.testing.assert_allclose(
        highlighted[0].get_xdata(),
        tr["potential_V"][table.sweeps[1].sample_start : table.sweeps[1].sample_stop],
    )
    viewer.layers.clear()
    gc.collect()


@pytest.mark.gui
def test_analysis_widget_writes_a_map_movie(
    make_napari_viewer: Any, qtbot: Any, scanned_cv: Path, tmp_path: Path
) -> None:
    from PIL import Image

    viewer = make_napari_viewer(show=False)
    viewer.open(str(scanned_cv), plugin="napari-seccm")
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Analysis")
    assert widget.movie_segment.count() == 5  # every segment, then each of the four
    widget.movie_segment.setCurrentIndex(2)  # segment 1
    widget.movie_frames.setValue(5)
    out = tmp_path / "w.gif"
    widget.movie(out)
    qtbot.waitUntil(lambda: widget._movie_worker is None, timeout=60_000)
    assert "5 frames" in widget.status.text(), widget.status.text()
    with Image.open(out) as im:
        assert im.n_frames == 5
    # an existing file is not replaced: said in the status line
    widget.movie(out)
    qtbot.waitUntil(lambda: widget._movie_worker is None, timeout=60_000)
    assert "exists" in widget.status.text()


def test_info_lists_the_sweep_segments(
    cv_store: Path, ca_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(cv_store)]) == 0
    out = capsys.readouterr().out
    assert "sweep            segment 3 (cycle 1): 0.8 -> -0.2 V, falling, 5 V/s" in out
    assert main(["info", str(ca_store)]) == 0
    assert "sweep" not in capsys.readouterr().out


@pytest.mark.gui
def test_a_running_cv_scan_fills_the_potential_layer_and_ends_complete(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path
) -> None:
    """A CV map scanned from the Scan widget in real time: the layer browsed
    by potential takes in the points measured so far while the scan runs (its
    traces read off the GUI thread), and shows the whole map when it ends."""
    from _scan_helpers import small_plan

    viewer = make_napari_viewer(show=False)
    _, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    _, sw = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan")
    rig._load()
    core = rig.session.core
    core.setProperty("SECCM", "TimeScale", 0.25)  # ~4 s of scanning
    plan = small_plan(
        width_um=2.5,
        pitch_um=0.5,
        measurement=CyclicVoltammetry(start_V=0.0, vertex_V=1.0, scan_rate_V_per_s=10.0),
    )
    sw.set_plan(plan)
    sw.out_edit.setText(str(tmp_path / "live_cv.seccm.zarr"))
    sw.start()
    qtbot.waitUntil(lambda: sw.scan is not None and sw.session.live is not None, timeout=30000)
    live = sw.session.live
    assert len(live.volt_layers) == 1
    layer = live.volt_layers[0]
    n_total = sw.scan.n_total
    seen_partial: list[int] = []

    def partial() -> bool:
        n = int(np.isfinite(layer.data.at(0, 0.5)).sum())
        if 0 < n < n_total:
            seen_partial.append(n)
        return bool(seen_partial)

    qtbot.waitUntil(partial, timeout=30000)
    assert sw.scan.final_status is None, "the scan ended before the layer took in a point"
    qtbot.waitUntil(lambda: sw.scan.final_status is not None, timeout=60000)
    qtbot.waitUntil(lambda: not live.timer.isActive(), timeout=10000)
    assert sw.scan.final_status == "complete"
    full = layer.data.at(0, 0.5)
    assert np.isfinite(full).sum() == n_total
    want = map_at(tmp_path / "live_cv.seccm.zarr", 0.5, 0)["current_A"] * 1e9
    np.testing.assert_allclose(full, want, rtol=1e-5)
    lo, hi = layer.contrast_limits
    assert hi > lo and (lo, hi) != (0.0, 1.0)
