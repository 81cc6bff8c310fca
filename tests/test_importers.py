"""Importers of other instruments' SECCM files (napari_seccm.io.importers).

Every source file is written here by the test in the other program's layout
(npTDMS's writer with WEC-SPM's exact channel names, scipy's MAT writer with
HEKA's export names, tifffile with Park's private tags, plain CSV text), then
imported through the real code into a real store on disk, which is read back
with zarr, validated, analysed, exported and (one test) opened in napari.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_seccm.acquisition.store import NO_CONTACT, OK, ScanStore
from napari_seccm.cli import main
from napari_seccm.io.importers import ImportInputError, ImportOptions, import_files

# ----------------------------------------------------------------- WEC-SPM
WEC_CHANNELS = (
    "X (um)",
    "Y (um)",
    "Z (um)",
    "V1 (V)",
    "V2 (V)",
    "Current1 (A)",
    "Current 2 (A)",
    "Current 3 (A)",
    "FeedbackType ",  # the trailing space is WEC-SPM's
    "Line Number",
    "Lockin Amplitude",
    "Lockin  Phase",  # two spaces
    "dt(s)",
)


def wec_run(
    nx: int = 6, ny: int = 5, pitch: float = 0.5, fs: float = 2000.0, n_meas: int = 40, seed=0
) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    """A hopping run sample by sample: per landing an approach (feedback 1 on
    the first landing, then 2), the measurement (4), the retract (3) and the
    move (0); line number = row. Returns the channels and the truth."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[float]] = {k: [] for k in WEC_CHANNELS}
    truth = []
    for r in range(ny):
        for c in range(nx):
            x = 1.0 + c * pitch + rng.normal(0, 0.002)
            y = 2.0 + r * pitch + rng.normal(0, 0.002)
            zc = 5.0 - 0.1 * x + 0.05 * y
            cur = (1 + 0.5 * np.sin(x)) * 1e-9
            fb_app = 1 if not truth else 2
            segs = [
                (fb_app, 30, np.linspace(zc + 1, zc, 30), np.r_[np.zeros(29), 20e-12]),
                (4, n_meas, np.full(n_meas, zc), cur + rng.normal(0, 1e-12, n_meas)),
                (3, 10, np.linspace(zc, zc + 1, 10), np.zeros(10)),
                (0, 8, np.full(8, zc + 1), np.zeros(8)),
            ]
            for fb, n, z, i in segs:
                for name, v in (
                    ("X (um)", [x] * n),
                    ("Y (um)", [y] * n),
                    ("Z (um)", list(z)),
                    ("V1 (V)", [1.0] * n),
                    ("V2 (V)", [0.0] * n),
                    ("Current1 (A)", list(i)),
                    ("Current 2 (A)", [0.0] * n),
                    ("Current 3 (A)", [0.0] * n),
                    ("FeedbackType ", [fb] * n),
                    ("Line Number", [r] * n),
                    ("Lockin Amplitude", [0.0] * n),
                    ("Lockin  Phase", [0.0] * n),
                    ("dt(s)", [1 / fs] * n),
                ):
                    cols[name].extend(v)
            truth.append({"x": x, "y": y, "z": zc, "I": cur, "row": r, "col": c})
    return cols, truth


def write_tdms(path: Path, cols: dict[str, list[float]], props: dict | None = None) -> Path:
    from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter

    with TdmsWriter(str(path)) as w:
        w.write_segment(
            [RootObject(props or {"name": "hopping run"}), GroupObject("Data")]
            + [ChannelObject("Data", k, np.asarray(v, dtype=float)) for k, v in cols.items()]
        )
    return path


def _rows(cols: dict[str, list[float]], lines: set[int]) -> dict[str, list[float]]:
    keep = [k for k, ln in enumerate(cols["Line Number"]) if ln in lines]
    return {k: [v[i] for i in keep] for k, v in cols.items()}


def test_wec_tdms_run_becomes_a_valid_store(tmp_path: Path) -> None:
    cols, truth = wec_run()
    src = write_tdms(tmp_path / "run.tdms", cols)
    out = import_files([src], tmp_path / "run.seccm.zarr")

    with ScanStore.open(out) as s:
        assert s.problems() == []
        g = s.grid
        assert (g.nx, g.ny) == (6, 5)
        assert g.pitch_um == pytest.approx(0.5, abs=0.01)
        res = s.results()
        assert (res["status"] == OK).all() and res["done"].all()
        # acquisition order kept: landing i is truth i
        xs = np.array([t["x"] for t in truth])
        assert np.allclose(res["x_um"], xs)
        assert np.allclose(res["contact_z_um"], [t["z"] for t in truth])
        assert np.allclose(res["value_A"], [t["I"] for t in truth], rtol=0.01)
        cmap = s.current_map()
        for t in truth:
            assert cmap[t["row"], t["col"]] == pytest.approx(t["I"], rel=0.01)
        assert s.n_samples == 40
        assert s.meta["sample_rate_Hz"] == pytest.approx(2000.0)
        assert np.isfinite(s.trace(0)["current_A"]).all()
        assert np.allclose(s.trace(0)["potential_V"], 1.0)
        plan = s.plan()
        assert plan.measurement.kind == "ca" and plan.measurement.potential_V == 1.0
        imp = s.meta["imported"]
    # the approach curves, as a scan's: (n, 512), NaN after each one's last sample
    from napari_seccm.acquisition.store import APPROACH_MAX_SAMPLES

    root = zarr.open_group(str(out), mode="r")
    az = root["approach/z_um"][:]
    ai = root["approach/current_A"][:]
    assert az.shape == ai.shape == (30, APPROACH_MAX_SAMPLES)
    last = int(np.flatnonzero(np.isfinite(az[0]))[-1])
    assert np.isfinite(az[0, : last + 1]).all() and np.isnan(az[0, last + 1 :]).all()
    assert az[0, last] == pytest.approx(truth[0]["z"], abs=1e-5)
    assert ai[0, last] == pytest.approx(20e-12)
    # provenance: the file, its size and sha256, the header, what was inferred
    src_rec = imp["sources"][0]
    assert src_rec["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert src_rec["size_bytes"] == src.stat().st_size
    assert imp["format"] == "wec-tdms"
    assert imp["source_metadata"]["files"][0]["properties"]["name"] == "hopping run"
    inf = imp["inferred"]
    assert inf["map_channel"] == "Current1 (A)"
    assert inf["grid"]["nx"] == 6 and "nearest-neighbour" in inf["pitch_rule"]
    assert "last half" in inf["readout_window"]
    # nothing left beside the store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.seccm.zarr", "run.tdms"]


def test_wec_tdms_files_of_one_run_combine_in_line_order(tmp_path: Path) -> None:
    cols, truth = wec_run(nx=4, ny=4)
    a = write_tdms(tmp_path / "b_first.tdms", _rows(cols, {0, 1}))
    b = write_tdms(tmp_path / "a_second.tdms", _rows(cols, {2, 3}))
    out = import_files([b, a], tmp_path / "run.seccm.zarr")  # given out of order
    with ScanStore.open(out) as s:
        res = s.results()
        assert s.problems() == []
        assert np.allclose(res["y_um"], [t["y"] for t in truth])
        assert np.all(np.diff(res["t_start_s"]) > 0)  # the time runs on across files
        imp = s.meta["imported"]
    assert imp["inferred"]["file_order"] == ["b_first.tdms", "a_second.tdms"]
    assert [r["name"] for r in imp["sources"]] == ["b_first.tdms", "a_second.tdms"]


def test_wec_readout_window_option_and_no_contact(tmp_path: Path) -> None:
    cols, truth = wec_run(nx=3, ny=2, n_meas=40)
    # the measurement's first 10 samples read 5x the current: only the
    # window [0, 5) ms (10 samples at 2 kHz) sees them
    fb = np.asarray(cols["FeedbackType "])
    cur = np.asarray(cols["Current1 (A)"])
    starts = np.flatnonzero((fb == 4) & (np.r_[0, fb[:-1]] != 4))
    for s0 in starts:
        cur[s0 : s0 + 10] *= 5
    # the last landing never touches: its approach runs straight into the retract
    last = starts[-1]
    fb[last : last + 40] = 3
    cols["FeedbackType "] = fb.tolist()
    cols["Current1 (A)"] = cur.tolist()
    src = write_tdms(tmp_path / "run.tdms", cols)
    out = import_files(
        [src], tmp_path / "w.seccm.zarr", options=ImportOptions(readout_window_s=(0.0, 0.005))
    )
    with ScanStore.open(out) as s:
        res = s.results()
        assert s.meta["readout_window_s"] == [0.0, 0.005]
        assert res["value_A"][0] == pytest.approx(5 * truth[0]["I"], rel=0.02)
        assert res["status"][-1] == NO_CONTACT
        assert np.isnan(res["contact_z_um"][-1])
        assert any("no_contact" in n for n in s.meta["imported"]["notes"])


def test_imported_store_is_analysed_exported_and_infoed_by_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cols, _ = wec_run(nx=8, ny=8, pitch=0.4)
    src = write_tdms(tmp_path / "run.tdms", cols)
    store = tmp_path / "run.seccm.zarr"
    assert main(["import", str(src), "--out", str(store)]) == 0
    assert "64 landings" in capsys.readouterr().out
    assert main(["analyze", str(store), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_valid"] == 64 and result["measurement"] == "ca"
    # the contact heights' plane is the source's: z = 5 - 0.1 x + 0.05 y
    assert result["height"]["slope_x_um_per_um"] == pytest.approx(-0.1, abs=0.005)
    assert result["height"]["slope_y_um_per_um"] == pytest.approx(0.05, abs=0.005)
    assert main(["export", str(store), "--out", str(tmp_path / "map.gsf")]) == 0
    gsf = (tmp_path / "map.gsf").read_bytes()
    assert gsf.startswith(b"Gwyddion Simple Field") and b"XRes = 8" in gsf
    assert main(["export", str(store), "--traces", "--out", str(tmp_path / "tr.csv")]) == 0
    assert len((tmp_path / "tr.csv").read_text().splitlines()) == 1 + 64 * 40
    capsys.readouterr()
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["points_done"] == 64 and info["problems"] == [] and info["status"] == "complete"


# ------------------------------------------------------------------- Park
def park_header(**kw) -> bytes:
    from napari_seccm.io.importers.park_tiff import HEADER_FIELDS

    d = {
        "data_category": 0,
        "channel_name": "Current",
        "head_mode": "SECCM",
        "scan_size_x_um": 4.0,
        "scan_size_y_um": 3.0,
        "scan_offset_x_um": 10.0,
        "scan_offset_y_um": 20.0,
        "data_gain": 1e-3,
        "unit": "nA",
        "data_type": 2,
        "sample_bias_V": 0.5,
        **kw,
    }
    out = b""
    for name, fmt in HEADER_FIELDS:
        v = d.get(name, 0)
        out += struct.pack("<" + fmt, str(v).encode("utf-16-le") if fmt.endswith("s") else v)
    return out


def write_park(path: Path, raw: np.ndarray, **kw) -> Path:
    """A Park TIFF: an 8-bit preview plus the private tags 50432-50436."""
    import tifffile

    dt = {0: "<i2", 1: "<i4", 2: "<f4"}[kw.get("data_type", 2)]
    h = park_header(height=raw.shape[0], width=raw.shape[1], **kw)
    data = np.asarray(raw).astype(dt).tobytes()
    tifffile.imwrite(
        path,
        np.zeros(raw.shape, np.uint8),
        extratags=[
            (50432, 4, 1, 0x0E031301, True),
            (50433, 4, 1, 0x01000005, True),
            (50434, 1, len(data), data, True),
            (50435, 1, len(h), h, True),
            (50436, 2, 0, "SECCM map", True),
        ],
    )
    return path


@pytest.mark.parametrize("data_type", [0, 2])
def test_park_current_and_height_images_make_one_map_store(tmp_path: Path, data_type) -> None:
    raw = np.arange(48).reshape(6, 8) + 1
    cur = write_park(tmp_path / "cur.tiff", raw, data_type=data_type)
    hgt = write_park(
        tmp_path / "hgt.tiff", raw * 10, channel_name="Z Height", unit="nm", data_gain=1.0
    )
    out = import_files([cur, hgt], tmp_path / "park.seccm.zarr")
    with ScanStore.open(out) as s:
        assert s.problems() == []
        g = s.grid
        # scan 4 x 3 um over 8 x 6 px, centred on the offset (10, 20) um
        assert (g.nx, g.ny, g.pitch_um, g.x0_um, g.y0_um) == (8, 6, 0.5, 8.0, 18.5)
        assert np.allclose(s.current_map(), raw * 1e-3 * 1e-9)  # raw x gain, in nA
        assert np.allclose(s.height_map(), raw * 10 * 1e-3)  # nm -> um
        assert s.plan().measurement.potential_V == 0.5  # the header's sample bias
        hdr = s.meta["imported"]["source_metadata"]["headers"]["cur.tiff"]
        assert hdr["channel_name"] == "Current" and hdr["comments"] == "SECCM map"
        assert s.meta["imported"]["inferred"]["height_channel"].startswith("Z Height (nm)")
    # opened like any store: the maps in stage coordinates
    from napari_seccm.io.layers import scan_layer_data

    layers = scan_layer_data(out)
    kw = layers[-1][1]
    assert kw["scale"] == (0.5, 0.5) and kw["translate"] == (18.75, 8.25)


def test_park_spectroscopy_without_its_tags_profiles_and_plain_tiffs_are_refused(
    tmp_path: Path,
) -> None:
    import tifffile

    spec = write_park(tmp_path / "spec.tiff", np.ones((2, 2)), data_category=2)
    with pytest.raises(
        ImportInputError,
        match=r"spec\.tiff: a Park spectroscopy file .* without its spectroscopy header \(tag 50438\)",
    ):
        import_files([spec], tmp_path / "a.seccm.zarr")
    profile = write_park(tmp_path / "prof.tiff", np.ones((2, 2)), data_category=1)
    with pytest.raises(ImportInputError, match=r"prof\.tiff: a line profile; only Park images"):
        import_files([profile], tmp_path / "a.seccm.zarr")
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((4, 4), np.uint8))
    with pytest.raises(ImportInputError, match=r"plain\.tif: a TIFF without Park"):
        import_files([plain], tmp_path / "b.seccm.zarr")
    volts = write_park(tmp_path / "v.tiff", np.ones((2, 2)), unit="V")
    with pytest.raises(ImportInputError, match=r"v\.tiff: channel 'Current' is in 'V'"):
        import_files([volts], tmp_path / "c.seccm.zarr")
    assert not list(tmp_path.glob("*.seccm.zarr")) and not list(tmp_path.glob(".*"))


# ------------------------------------------------------------------- HEKA
def write_heka(path: Path, n: int = 6, ns: int = 50, fs: float = 1000.0) -> list[float]:
    """HEKA's MATLAB export: Trace_<group>_<series>_<sweep>_<trace>, N x 2
    [time, value]; trace 1 the current, trace 2 the potential (an LSV)."""
    import scipy.io

    rng = np.random.default_rng(1)
    t = np.arange(ns) / fs
    e = np.linspace(0.0, 1.0, ns)
    g_true = [(k + 1) * 1e-9 for k in range(n)]
    d = {}
    for k in range(n):
        d[f"Trace_1_1_{k + 1}_1"] = np.column_stack([t, g_true[k] * e + rng.normal(0, 1e-12, ns)])
        d[f"Trace_1_1_{k + 1}_2"] = np.column_stack([t, e])
    scipy.io.savemat(path, d)
    return g_true


def test_heka_sweeps_with_a_positions_file(tmp_path: Path) -> None:
    g_true = write_heka(tmp_path / "cell.mat")
    pos = tmp_path / "cell.positions.csv"  # found next to the export
    pos.write_text(
        "x (nm),y (nm)\n" + "".join(f"{c * 500},{r * 500}\n" for r in range(2) for c in range(3))
    )
    out = import_files([tmp_path / "cell.mat"], tmp_path / "cell.seccm.zarr")
    with ScanStore.open(out) as s:
        assert s.problems() == []
        assert (s.grid.nx, s.grid.ny, s.grid.pitch_um) == (3, 2, 0.5)
        plan = s.plan()
        assert plan.measurement.kind == "lsv" and plan.measurement.end_V == pytest.approx(1.0)
        imp = s.meta["imported"]
        assert [r["name"] for r in imp["sources"]] == ["cell.mat", "cell.positions.csv"]
        assert imp["inferred"]["positions"] == "from cell.positions.csv"
    from napari_seccm.analysis.maps import point_conductance

    g = point_conductance(out)
    assert g["method"] == "iv_fit"
    assert np.allclose(g["conductance_S"], g_true, rtol=0.02)


def test_heka_grid_option_and_refusal_without_positions(tmp_path: Path) -> None:
    write_heka(tmp_path / "cell.mat", n=4)
    with pytest.raises(ImportInputError, match=r"cell\.mat: 4 sweeps but no positions.*--grid"):
        import_files([tmp_path / "cell.mat"], tmp_path / "a.seccm.zarr")
    with pytest.raises(ImportInputError, match="--grid 3 3 gives 9 points for 4 sweeps"):
        import_files(
            [tmp_path / "cell.mat"],
            tmp_path / "a.seccm.zarr",
            options=ImportOptions(grid=(3, 3), pitch_um=1.0),
        )
    out = import_files(
        [tmp_path / "cell.mat"],
        tmp_path / "a.seccm.zarr",
        options=ImportOptions(grid=(2, 2), pitch_um=1.0, grid_order="serpentine"),
    )
    with ScanStore.open(out) as s:
        pts = s.points()
        assert pts["col"].tolist() == [0, 1, 1, 0] and pts["row"].tolist() == [0, 0, 1, 1]


def test_heka_mat_without_traces_names_what_it_found(tmp_path: Path) -> None:
    import scipy.io

    scipy.io.savemat(tmp_path / "other.mat", {"data": np.ones((3, 3))})
    with pytest.raises(ImportInputError, match=r"other\.mat: no variable named Trace_.*data"):
        import_files(
            [tmp_path / "other.mat"],
            tmp_path / "o.seccm.zarr",
            options=ImportOptions(grid=(1, 1), pitch_um=1),
        )


# -------------------------------------------------------------------- CSV
def test_csv_one_row_per_sample_units_from_the_header(tmp_path: Path) -> None:
    rows = ["# written by another rig", "x (nm),y (nm),t (ms),E (mV),I (pA),point"]
    for p, (x, y) in enumerate([(0, 0), (500, 0), (0, 500), (500, 500)]):
        for k in range(4):
            rows.append(f"{x},{y},{k * 0.5},{250},{(p + 1) * 10 + k},{p}")
    src = tmp_path / "scan.csv"
    src.write_text("\n".join(rows) + "\n")
    out = import_files([src], tmp_path / "scan.seccm.zarr")
    with ScanStore.open(out) as s:
        assert s.problems() == []
        assert s.meta["sample_rate_Hz"] == pytest.approx(2000.0)  # 0.5 ms steps
        assert s.grid.pitch_um == pytest.approx(0.5)  # nm -> um
        # last half of each landing: samples 2, 3 -> mean (p+1)*10 + 2.5 pA
        assert np.allclose(s.results()["value_A"], [(p + 1) * 10e-12 + 2.5e-12 for p in range(4)])
        assert s.plan().measurement.potential_V == pytest.approx(0.25)
        assert s.meta["imported"]["source_metadata"]["comments"] == ["written by another rig"]


def test_csv_one_row_per_point_with_nan_current_is_a_fault(tmp_path: Path) -> None:
    src = tmp_path / "map.csv"
    src.write_text("x (um);y (um);I (nA);z (um)\n0;0;1;5\n1;0;2;5.1\n0;1;nan;5.2\n1;1;4;5.3\n")
    out = import_files([src], tmp_path / "map.seccm.zarr")
    with ScanStore.open(out) as s:
        assert s.problems() == []
        assert s.status_counts()["fault"] == 1 and s.status_counts()["ok"] == 3
        m = s.current_map()
        assert m[0, 1] == pytest.approx(2e-9) and np.isnan(m[1, 0])
        assert np.isnan(s.results()["t_start_s"]).all()  # the table gives no times
        assert any("NaN" in n for n in s.meta["imported"]["notes"])


def test_echemtips_needs_its_json_and_maps_columns_from_it(tmp_path: Path) -> None:
    src = tmp_path / "run.csv"
    src.write_text("Xpos,Ypos,Ipix\n0,0,1\n2,0,2\n0,2,3\n2,2,4\n")
    with pytest.raises(ImportInputError, match=r"run\.csv: an eChemTips import needs the JSON"):
        import_files([src], tmp_path / "e.seccm.zarr", fmt="echemtips")
    side = tmp_path / "run.json"
    side.write_text(json.dumps({"columns": {"x": "Xpos@um", "y": "Ypos@um", "I": "Ipix@pA"}}))
    out = import_files([src], tmp_path / "e.seccm.zarr", fmt="echemtips")
    with ScanStore.open(out) as s:
        assert np.allclose(s.results()["value_A"], [1e-12, 2e-12, 3e-12, 4e-12])
        imp = s.meta["imported"]
        assert imp["format"] == "echemtips"
        assert imp["source_metadata"]["companions"]["run.json"]["columns"]["x"] == "Xpos@um"
        assert [r["name"] for r in imp["sources"]] == ["run.csv", "run.json"]


UNITS = {"um": 1.0, "nm": 1e-3, "mm": 1e3}
CURRENTS = {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "nA": 1e-9, "pA": 1e-12}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    nx=st.integers(1, 6),
    ny=st.integers(2, 6),
    pitch_um=st.floats(0.05, 20.0),
    x0=st.floats(-100, 100),
    lu=st.sampled_from(sorted(UNITS)),
    cu=st.sampled_from(sorted(CURRENTS)),
    jitter=st.floats(0.0, 0.2),
    seed=st.integers(0, 1000),
)
def test_per_point_tables_map_every_landing_to_its_pixel(
    tmp_path_factory, nx, ny, pitch_um, x0, lu, cu, jitter, seed
) -> None:
    """Any grid, pitch, origin, units and position noise below a fifth of a
    pitch: every landing lands in its own pixel with its value, in A and um."""
    rng = np.random.default_rng(seed)
    d = tmp_path_factory.mktemp("csv")
    rr, cc = np.mgrid[0:ny, 0:nx]
    x = x0 + cc.ravel() * pitch_um + rng.uniform(-jitter, jitter, rr.size) * pitch_um
    y = rr.ravel() * pitch_um + rng.uniform(-jitter, jitter, rr.size) * pitch_um
    v = rng.uniform(1, 100, rr.size)
    lines = [f"x ({lu}),y ({lu}),I ({cu})"]
    lines += [
        f"{float(a) / UNITS[lu]!r},{float(b) / UNITS[lu]!r},{float(c)!r}"
        for a, b, c in zip(x, y, v, strict=True)
    ]
    (d / "t.csv").write_text("\n".join(lines) + "\n")
    out = import_files([d / "t.csv"], d / "t.seccm.zarr", options=ImportOptions(pitch_um=pitch_um))
    with ScanStore.open(out) as s:
        assert s.problems() == []
        pts = s.points()
        assert pts["row"].tolist() == rr.ravel().tolist()
        assert pts["col"].tolist() == cc.ravel().tolist()
        m = s.current_map()
        assert np.allclose(m[rr, cc].ravel(), v * CURRENTS[cu], rtol=1e-6)
        assert np.allclose(s.results()["x_um"], x, rtol=1e-9, atol=1e-9)


# -------------------------------------------------------------- malformed
def _nothing_written(folder: Path, before: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == before  # no store, no hidden folder


def test_truncated_tdms_is_refused_naming_the_file(tmp_path: Path) -> None:
    cols, _ = wec_run(nx=3, ny=2)
    src = write_tdms(tmp_path / "run.tdms", cols)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(ImportInputError, match=r"run\.tdms: .*(truncated|damaged|not a readable)"):
        import_files([src], tmp_path / "run.seccm.zarr")
    _nothing_written(tmp_path, before)


def test_missing_channel_names_it_and_the_near_miss(tmp_path: Path) -> None:
    cols, _ = wec_run(nx=2, ny=2)
    cols["FeedbackType"] = cols.pop("FeedbackType ")  # the trailing space lost
    src = write_tdms(tmp_path / "run.tdms", cols)
    with pytest.raises(ImportInputError) as e:
        import_files([src], tmp_path / "run.seccm.zarr")
    msg = str(e.value)
    assert "run.tdms" in msg and "'FeedbackType '" in msg and "found 'FeedbackType'" in msg


def test_wrong_units_and_nan_positions_are_refused(tmp_path: Path) -> None:
    cols, _ = wec_run(nx=2, ny=2)
    cols["X (A)"] = cols.pop("X (um)")
    with pytest.raises(ImportInputError, match=r"no channel 'X \(um\)'"):
        import_files([write_tdms(tmp_path / "a.tdms", cols)], tmp_path / "a.seccm.zarr")
    assert not list(tmp_path.glob("*.seccm.zarr")) and not list(tmp_path.glob(".*"))


BAD_FILES = [
    # (file, its text, what the message says)
    ("b.csv", "x (A),y (um),I (nA)\n0,0,1\n1,0,2\n", r"column 'x \(A\)': unit 'A' is not a length"),
    ("c.csv", "x (bananas),y (um),I (nA)\n0,0,1\n", r"column 'x \(bananas\)': unknown unit"),
    ("d.csv", "x (um),y (um),I (nA)\n0,0,1\nnan,0,2\n", r"column 'x \(um\)' holds NaN .* row 2"),
    ("e.csv", "x (um),y (um),I (nA)\n0,0,1\n1,0,lots\n", r"row 3, column 'I \(nA\)': 'lots'"),
    ("f.csv", "x,y (um),I (nA)\n0,0,1\n", r"column 'x' \(x\) names no unit"),
    ("g.csv", "x (um),y (um)\n0,0\n", r"needs the columns x \(um\), y \(um\), I \(A\)"),
    ("h.csv", "x (um),y (um),I (nA)\n", "a header but no data rows"),
    ("empty.tdms", "", "is empty"),
    ("scan.xyz", "1 2 3\n", "unknown format"),
]


@pytest.mark.parametrize(("name", "text", "says"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_malformed_files_are_refused_and_nothing_is_written(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    src = tmp_path / name
    src.write_text(text)
    with pytest.raises(ImportInputError, match=re.escape(name) + ".*" + says):
        import_files([src], tmp_path / "x.seccm.zarr")
    _nothing_written(tmp_path, {name})


def test_shared_pixels_are_refused_unless_allowed(tmp_path: Path) -> None:
    twice = tmp_path / "twice.csv"
    twice.write_text("x (um),y (um),I (nA)\n0,0,1\n1,0,2\n1.1,0,3\n")
    with pytest.raises(ImportInputError, match=r"share a map pixel.*--allow-shared-pixels"):
        import_files([twice], tmp_path / "x.seccm.zarr", options=ImportOptions(pitch_um=1.0))
    out = import_files(
        [twice],
        tmp_path / "x.seccm.zarr",
        options=ImportOptions(pitch_um=1.0, allow_shared_pixels=True),
    )
    with ScanStore.open(out) as s:
        assert s.current_map()[0, 1] == pytest.approx(3e-9)  # the later landing
        assert s.problems() == []


def test_existing_out_without_overwrite_writes_nothing(tmp_path: Path, capsys) -> None:
    cols, _ = wec_run(nx=2, ny=2)
    src = write_tdms(tmp_path / "run.tdms", cols)
    out = tmp_path / "run.seccm.zarr"
    assert main(["import", str(src), "--out", str(out)]) == 0
    zj = out / "zarr.json"
    stamp = (zj.read_bytes(), zj.stat().st_mtime_ns)
    before = {p.name for p in tmp_path.iterdir()}
    assert main(["import", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert (zj.read_bytes(), zj.stat().st_mtime_ns) == stamp
    _nothing_written(tmp_path, before)
    # --overwrite replaces it (and only a store): the new import is there
    assert main(["import", str(src), "--out", str(out), "--overwrite", "--pitch", "0.45"]) == 0
    with ScanStore.open(out) as s:
        assert s.grid.pitch_um == 0.45
    _nothing_written(tmp_path, before)
    # a folder that is not a store is never replaced
    folder = tmp_path / "notes.seccm.zarr"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    assert main(["import", str(src), "--out", str(folder), "--overwrite"]) == 2
    assert (folder / "mine.txt").read_text() == "keep"


# ------------------------------------------------------------------- napari
@pytest.mark.gui
def test_napari_opens_a_tdms_run_as_a_store(make_napari_viewer, tmp_path: Path) -> None:
    cols, _ = wec_run(nx=5, ny=4)
    src = write_tdms(tmp_path / "run.tdms", cols)
    viewer = make_napari_viewer(show=False)
    viewer.open(str(src), plugin="napari-seccm")
    store = tmp_path / "run.seccm.zarr"
    assert store.is_dir()  # imported next to the file
    names = [layer.name for layer in viewer.layers]
    assert names == ["run contact height (um)", "run current (nA)"]
    cur = viewer.layers["run current (nA)"]
    with ScanStore.open(store) as s:
        g = s.grid
        assert np.allclose(np.asarray(cur.data), s.current_map() * 1e9)
    assert tuple(cur.scale) == pytest.approx((g.pitch_um, g.pitch_um))
    assert cur.metadata["seccm"]["store"] == str(store.resolve())
    # opened again: the earlier import is reused, nothing new is written
    mtime = (store / "zarr.json").stat().st_mtime_ns
    viewer.open(str(src), plugin="napari-seccm")
    assert (store / "zarr.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.seccm.zarr", "run.tdms"]
    # a changed source is a new import beside it, never over the first
    write_tdms(src, cols, props={"name": "edited"})
    viewer.open(str(src), plugin="napari-seccm")
    assert (tmp_path / "run-2.seccm.zarr").is_dir()
    assert (store / "zarr.json").stat().st_mtime_ns == mtime
    os.sync()
