"""Exports read back with independent readers: a GSF parser written here from
the Gwyddion GSF spec, ``gwyfile`` for .gwy, ``tifffile`` for TIFF, the csv
module for the point table, matplotlib for PNG; and the ``export`` command.

One small CA map (4 x 4 um at 0.25 um, centred off the origin so that the
offsets are tested) is scanned through the real stack once per module; a copy
of it has some landings marked as failed, so that NaN pixels are exported too.
"""

from __future__ import annotations

import csv
import gc
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_seccm.analysis.export import (
    export_store,
    gsf_bytes,
    write_gsf,
    write_point_table,
)
from napari_seccm.analysis.maps import QUALITY_NO_CONTACT, conductance_maps, height_map

CENTER = (1.5, -2.0)
PITCH = 0.25
N = 16  # 4 um / 0.25 um
BAD_POINTS = (0, 17, 100, 255)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scan, with four landings turned into 'no contact' (NaN pixels)."""
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
    from napari_seccm.acquisition.scan import Scan
    from napari_seccm.configs import load_core

    base = tmp_path_factory.mktemp("export")
    path = base / "scan.seccm.zarr"
    plan = ScanPlan(
        area=RectangleArea(
            width_um=4.0, height_um=4.0, center_x_um=CENTER[0], center_y_um=CENTER[1]
        ),
        pitch_um=PITCH,
        footprint_diameter_um=0.12,
    )
    core = load_core()
    try:
        assert Scan.create(core, plan, path).run() == "complete"
    finally:
        core.unloadAllDevices()
        del core
        gc.collect()
    bad = base / "bad.seccm.zarr"
    shutil.copytree(path, bad, ignore=shutil.ignore_patterns(".lock"))
    root = zarr.open_group(str(bad), mode="r+")
    st = root["results/status"]
    for i in BAD_POINTS:
        st[i] = QUALITY_NO_CONTACT
    return bad


@pytest.fixture(scope="module")
def expected(store: Path) -> dict:
    cm = conductance_maps(store)
    g = zarr.open_group(str(store), mode="r").attrs["seccm"]["grid"]
    return {"maps": cm, "grid": g, "height": height_map(store)}


def _nan_at_bad_points(img: np.ndarray, store: Path) -> None:
    root = zarr.open_group(str(store), mode="r")
    rows, cols = root["points/row"][:], root["points/col"][:]
    bad = np.zeros(img.shape, bool)
    bad[rows[list(BAD_POINTS)], cols[list(BAD_POINTS)]] = True
    assert np.array_equal(np.isnan(img), bad)


# --------------------------------------------------------------- GSF reader
def read_gsf(path: Path) -> tuple[dict[str, str], np.ndarray]:
    """A GSF reader following the Gwyddion spec: the magic line, ``name =
    value`` lines, 1-4 NUL bytes aligning the data to a multiple of 4, then
    XRes * YRes little-endian float32 values, row by row."""
    raw = Path(path).read_bytes()
    magic = b"Gwyddion Simple Field 1.0\n"
    assert raw.startswith(magic)
    end = raw.index(b"\0")
    meta: dict[str, str] = {}
    for line in raw[len(magic) : end].decode("utf-8").split("\n"):
        if line.strip():
            name, value = line.split("=", 1)
            meta[name.strip()] = value.strip()
    start = (end // 4 + 1) * 4  # one to four NULs: the next multiple of 4
    assert raw[end:start] == b"\0" * (start - end), "NUL padding must align the data to 4"
    xres, yres = int(meta["XRes"]), int(meta["YRes"])
    assert len(raw) == start + 4 * xres * yres
    data = np.frombuffer(raw, dtype="<f4", count=xres * yres, offset=start).reshape(yres, xres)
    return meta, data


def test_gsf_read_back(store: Path, expected: dict, tmp_path: Path) -> None:
    out = export_store(store, tmp_path / "current.gsf")
    meta, data = read_gsf(out)
    g = expected["grid"]
    assert int(meta["XRes"]) == N and int(meta["YRes"]) == N
    assert float(meta["XReal"]) == pytest.approx(N * PITCH * 1e-6)
    assert float(meta["YReal"]) == pytest.approx(N * PITCH * 1e-6)
    assert float(meta["XOffset"]) == pytest.approx(g["x0_um"] * 1e-6)
    assert float(meta["YOffset"]) == pytest.approx(g["y0_um"] * 1e-6)
    assert g["x0_um"] == pytest.approx(CENTER[0] - 2.0)
    assert meta["XYUnits"] == "m" and meta["ZUnits"] == "A"
    assert "1 V" in meta["Title"]
    want = expected["maps"]["current_A"].astype(np.float32)
    np.testing.assert_array_equal(data, want)  # NaN where not ok, same places
    _nan_at_bad_points(data, store)
    assert np.nanmin(data) > 1e-9  # nA currents, never a 0 for a missing pixel


def test_gsf_header_padding_for_every_header_length(tmp_path: Path) -> None:
    img = np.arange(6, dtype=np.float32).reshape(2, 3)
    for k in range(8):  # header lengths covering every remainder mod 4
        p = tmp_path / f"t{k}.gsf"
        write_gsf(p, img, x0_um=0.0, y0_um=0.0, pitch_um=1.0, title="x" * (k + 1))
        meta, data = read_gsf(p)
        assert meta["Title"] == "x" * (k + 1)
        np.testing.assert_array_equal(data, img)
    with pytest.raises(ValueError, match="2-D"):
        gsf_bytes(np.zeros(3), x0_um=0, y0_um=0, pitch_um=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_gsf(tmp_path / "no" / "x.gsf", img, x0_um=0.0, y0_um=0.0, pitch_um=1.0)


# ---------------------------------------------------------------------- GWY
def test_gwy_read_back_with_gwyfile(store: Path, expected: dict, tmp_path: Path) -> None:
    import gwyfile

    out = export_store(store, tmp_path / "all.gwy")
    c = gwyfile.load(str(out))
    titles = {c[f"/{k}/data/title"]: k for k in range(20) if f"/{k}/data" in c}
    assert {"Current", "Conductance", "Resistance", "Contact height"} <= set(titles)
    g = expected["grid"]
    k = titles["Current"]
    df = c[f"/{k}/data"]
    assert df.data.shape == (N, N)
    assert df.xreal == pytest.approx(N * PITCH * 1e-6) and df.yreal == pytest.approx(
        N * PITCH * 1e-6
    )
    assert df.xoff == pytest.approx(g["x0_um"] * 1e-6) and df.yoff == pytest.approx(
        g["y0_um"] * 1e-6
    )
    assert df.si_unit_xy.unitstr == "m" and df.si_unit_z.unitstr == "A"
    want = expected["maps"]["current_A"]
    valid = np.isfinite(want)
    np.testing.assert_allclose(df.data[valid], want[valid], rtol=1e-12)
    mask = c[f"/{k}/mask"].data
    assert np.array_equal(mask > 0.5, ~valid)
    # heights in metres
    h = c[f"/{titles['Contact height']}/data"]
    hv = expected["height"]["height_um"]
    ok = np.isfinite(hv)
    np.testing.assert_allclose(h.data[ok], hv[ok] * 1e-6, rtol=1e-12)


# --------------------------------------------------------------------- TIFF
def test_tiff_read_back_with_tifffile(store: Path, expected: dict, tmp_path: Path) -> None:
    import tifffile

    out = export_store(store, tmp_path / "g.tif", channel="conductance")
    with tifffile.TiffFile(out) as tf:
        data = tf.asarray()
        ij = tf.imagej_metadata
        page = tf.pages[0]
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
    want = expected["maps"]["conductance_S"].astype(np.float32)
    np.testing.assert_array_equal(data, want)
    _nan_at_bad_points(data, store)
    assert ij["unit"] in ("um", "micron")
    assert xres[1] / xres[0] == pytest.approx(PITCH) and yres[1] / yres[0] == pytest.approx(PITCH)
    g = expected["grid"]
    # ImageJ calibration: x = (pixel - xorigin) * pitch
    assert (0.5 - ij["xorigin"]) * PITCH == pytest.approx(g["x0_um"] + PITCH / 2)
    assert (0.5 - ij["yorigin"]) * PITCH == pytest.approx(g["y0_um"] + PITCH / 2)
    assert ij["value_unit"] == "S"


# ---------------------------------------------------------------------- CSV
def test_csv_point_table(store: Path, tmp_path: Path) -> None:
    out = export_store(store, tmp_path / "points.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    root = zarr.open_group(str(store), mode="r")
    n = root.attrs["seccm"]["n_points"]
    assert len(rows) == n
    for i in (1, 50, 200):
        r = rows[i]
        assert int(r["index"]) == i
        assert int(r["row"]) == root["points/row"][i] and int(r["col"]) == root["points/col"][i]
        assert float(r["x_um"]) == pytest.approx(root["results/x_um"][i], rel=1e-9)
        assert float(r["value_A"]) == pytest.approx(root["results/value_A"][i], rel=1e-9)
        assert float(r["conductance_S"]) == pytest.approx(
            root["results/value_A"][i] / 1.0, rel=1e-9
        )
        assert r["status_name"] == "ok" and r["quality_name"] == "ok"
    for i in BAD_POINTS:
        assert rows[i]["status_name"] == "no_contact"
        assert math.isnan(float(rows[i]["conductance_S"]))
    with pytest.raises(ValueError, match="comma"):
        write_point_table(tmp_path / "x.csv", {"a": np.array(["1,2"])})


def test_csv_carries_the_chosen_channel(store: Path, tmp_path: Path) -> None:
    """``--channel`` in a CSV export: the map's value at each point, in SI
    units, as a column (it was ignored: the same table whatever was asked)."""
    from napari_seccm.analysis.export import store_maps
    from napari_seccm.analysis.maps import open_store

    out = export_store(store, tmp_path / "h.csv", channel="height")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open_store(store) as s:
        h_um = np.asarray(store_maps(s, ["height"])["height_um"])
    for i in (1, 50, 200):
        r = rows[i]
        assert float(r["height_m"]) == pytest.approx(
            h_um[int(r["row"]), int(r["col"])] * 1e-6, rel=1e-9
        )
    assert math.isnan(float(rows[BAD_POINTS[1]]["height_m"]))
    with pytest.raises(ValueError, match="unknown channel"):
        export_store(store, tmp_path / "bad.csv", channel="bogus")
    assert not (tmp_path / "bad.csv").exists()


# ---------------------------------------------------------------------- PNG
def test_png_figure(store: Path, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    out = export_store(store, tmp_path / "map.png", channel="current")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert img[..., :3].std() > 0.05  # not blank


# ---------------------------------------------------------------- overwrite
@pytest.mark.parametrize("fmt", ["gsf", "gwy", "tif", "csv", "png"])
def test_never_overwrites_unless_asked(store: Path, tmp_path: Path, fmt: str) -> None:
    p = tmp_path / f"out.{fmt}"
    p.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="exists"):
        export_store(store, p)
    assert p.read_bytes() == b"precious"
    export_store(store, p, overwrite=True)
    assert p.read_bytes() != b"precious"
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name]  # no temporary left


# ---------------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "napari-seccm"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_seccm.cli"]
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env=env)


def test_cli_export(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from napari_seccm.cli import main

    out = tmp_path / "c.gsf"
    r = _cli(
        "export",
        str(store),
        "--format",
        "gsf",
        "--out",
        str(out),
        "--channel",
        "resistance",
    )
    assert r.returncode == 0, r.stderr
    meta, _data = read_gsf(out)
    assert meta["ZUnits"] == "Ohm"
    before = out.read_bytes()
    # again: refused, the file untouched
    r = _cli("export", str(store), "--format", "gsf", "--out", str(out))
    assert r.returncode == 2 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert out.read_bytes() == before
    # the same entry point in this process (quicker): --overwrite, bad input
    assert main(["export", str(store), "--format", "gsf", "--out", str(out), "--overwrite"]) == 0
    assert read_gsf(out)[0]["ZUnits"] == "A"
    capsys.readouterr()
    cases = [
        (
            [
                "export",
                str(tmp_path / "missing.seccm.zarr"),
                "--out",
                str(tmp_path / "a.gsf"),
            ],
            "does not exist",
        ),
        (
            ["export", str(tmp_path), "--out", str(tmp_path / "b.gsf")],
            "not a SECCM scan store",
        ),
        (
            ["export", str(store), "--out", str(tmp_path / "c.bmp")],
            "cannot tell the export format",
        ),
        (
            [
                "export",
                str(store),
                "--out",
                str(tmp_path / "d.gsf"),
                "--channel",
                "nope",
            ],
            "unknown channel",
        ),
        (
            ["export", str(store), "--out", str(tmp_path / "no" / "e.gsf")],
            "does not exist",
        ),
        (["export", str(store), "--out", str(tmp_path), "--format", "gsf"], "exists"),
    ]
    for args, msg in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err, (args, err)
    with pytest.raises(SystemExit) as e:  # argparse: an unknown --format
        main(["export", str(store), "--out", str(tmp_path / "f.gsf"), "--format", "jpeg"])
    assert e.value.code == 2
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.gsf"]


def test_traces_csv_holds_every_sample_of_the_chosen_points(store: Path, tmp_path: Path) -> None:
    """The raw traces for a plotting program: one row per sample, the values
    of the store's traces, points chosen by index; bad choices refused."""
    import csv

    from napari_seccm.acquisition.store import ScanStore
    from napari_seccm.analysis.export import write_traces_csv

    out = write_traces_csv(store, tmp_path / "traces.csv", points=[5, 2])
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["point", "row", "col", "x_um", "y_um", "status", "t_s", "E_V", "I_A"]
    with ScanStore.open(store) as s:
        for i in (5, 2):
            tr = s.trace(i)
            mine = [r for r in rows if int(r["point"]) == i]
            n = int(np.isfinite(tr["current_A"]).sum())
            assert len(mine) == n > 0
            np.testing.assert_allclose(
                [float(r["I_A"]) for r in mine], tr["current_A"][:n], rtol=1e-7
            )
            np.testing.assert_allclose(
                [float(r["E_V"]) for r in mine], tr["potential_V"][:n], rtol=1e-7
            )
            np.testing.assert_allclose([float(r["t_s"]) for r in mine], tr["time_s"][:n], rtol=1e-7)
        n_points = s.n_points
    assert [int(r["point"]) for r in rows[:1]] == [5]  # in the order asked
    with pytest.raises(ValueError, match=f"point {n_points} does not exist"):
        write_traces_csv(store, tmp_path / "x.csv", points=[n_points])
    with pytest.raises(FileExistsError):
        write_traces_csv(store, out, points=[1])
    r = _cli("export", str(store), "--traces", "--points", "0,1", "--out", str(tmp_path / "t.png"))
    assert r.returncode == 2 and "--traces writes CSV" in r.stderr
    r = _cli("export", str(store), "--traces", "--out", str(tmp_path / "all.csv"))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "all.csv") as fh:
        points = {int(row["point"]) for row in csv.DictReader(fh)}
    assert points == set(range(n_points))


def test_figure_units_read_as_the_analysis_reports_them() -> None:
    from napari_seccm.analysis.export import CHANNELS, si_prefix

    # a plane-removed height of +-2 nm reads in nm, not in hundreds of pm
    scale, prefix = si_prefix(np.array([0.3e-9, -1.9e-9, 2.0e-9, 0.1e-9, np.nan]))
    assert (prefix, scale) == ("n", pytest.approx(1e9))
    # conductivity figures in S/cm (the analysis summary's unit), files in SI
    ch = CHANNELS["conductivity"]
    assert ch.unit == "S/m" and ch.figure_unit == ("S/cm", 0.01)
    assert si_prefix(np.array([1.2e-3, 0.9e-3]) * 1.0)[1] == "m"  # 1.2 mS/cm
