"""Park Systems spectroscopy TIFFs (data category 2) imported into stores.

Each file is written here with tifffile: an 8-bit preview, the image header
(tag 50435, data category 2) and the spectroscopy header and data (tags
50438, 50439). The spectroscopy header is packed at the absolute byte
offsets of Park's own reader (pspylib's ``__loadSpectHeaderAndData__``),
not through the importer's field list, so that a wrong field size in the
importer shows up as a wrong value here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_importers import park_header

from napari_seccm.acquisition.store import OK, ScanStore
from napari_seccm.cli import main
from napari_seccm.io.importers import ImportInputError, ImportOptions, import_files

DTYPES = {0: "<i2", 1: "<i4", 2: "<f4"}


def spect_header(
    channels: list[tuple[str, str, float, int, int]],
    n_samples: int,
    points: np.ndarray,
    *,
    driving: int = 0,
    periods_s: tuple[float, float] = (0.1, 0.1),
    offsets: tuple[float, ...] = (),
    log_scale: tuple[int, ...] = (),
    data_type: int = 2,
    spect_type: int = 3,
    iv_V: tuple[float, float] = (-0.2, 0.6),
    n_points: int | None = None,
) -> bytes:
    """Tag 50438 in pspylib's layout: 8 channel slots of 96 bytes, the
    counts at 768, periods at 788, offsets at 808, log-scale flags at 872,
    squared at 904, grid at 936, I-V voltages at 1000, data type at 1108,
    the point table (x, y, time float32) from 1208."""
    buf = bytearray(1208 + 12 * len(points))
    for k, (name, unit, gain, is_x, is_y) in enumerate(channels):
        struct.pack_into(
            "<64s16sdii",
            buf,
            96 * k,
            name.encode("utf-16-le"),
            unit.encode("utf-16-le"),
            gain,
            is_x,
            is_y,
        )
    npt = len(points) if n_points is None else n_points
    struct.pack_into("<5i", buf, 768, len(channels), 1, n_samples, npt, driving)
    struct.pack_into("<4fi", buf, 788, *periods_s, 8.0, 8.0, 1)
    struct.pack_into("<8d", buf, 808, *(list(offsets) + [0.0] * (8 - len(offsets))))
    struct.pack_into("<8i", buf, 872, *(list(log_scale) + [0] * (8 - len(log_scale))))
    struct.pack_into("<2i4d", buf, 936, 0, 0, 2.5, 2.0, 11.25, 21.0)
    struct.pack_into("<5f", buf, 1000, iv_V[1], iv_V[0], iv_V[0], iv_V[1], 0.0)
    struct.pack_into("<ii", buf, 1048, 0, spect_type)
    struct.pack_into("<i", buf, 1108, data_type)
    struct.pack_into(f"<{3 * len(points)}f", buf, 1208, *np.asarray(points, float).ravel())
    return bytes(buf)


def write_spect(
    path: Path, header: bytes, data: bytes, *, drop: int | None = None, **image_kw
) -> Path:
    """A Park spectroscopy TIFF: preview, tags 50432-50436, 50438, 50439
    (``drop``: leave one tag out)."""
    import tifffile

    h = park_header(data_category=2, width=8, height=8, unit="V", **image_kw)
    tags = [
        (50432, 4, 1, 0x0E031301, True),
        (50433, 4, 1, 0x01000005, True),
        (50435, 1, len(h), h, True),
        (50436, 2, 0, "SECCM I-V map", True),
        (50438, 1, len(header), header, True),
        (50439, 1, len(data), data, True),
    ]
    tags = [t for t in tags if t[0] != drop]
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), extratags=tags)
    return path


def iv_map(nx: int = 6, ny: int = 5, n: int = 200, pitch: float = 0.5, seed: int = 0):
    """A serpentine hopping map of CVs (-0.2 -> 0.6 -> -0.2 V, n samples):
    (positions (n_pts, 3: x, y, t), potential (n,), currents (n_pts, n) A)."""
    rng = np.random.default_rng(seed)
    half = n // 2
    fwd = -0.2 + 0.8 * (np.arange(half) + 0.5) / half
    e = np.r_[fwd, fwd[::-1]]
    pts, cur = [], []
    for r in range(ny):
        cols = range(nx) if r % 2 == 0 else reversed(range(nx))
        for c in cols:
            x = 10.0 + c * pitch + rng.normal(0, 0.002)
            y = 20.0 + r * pitch + rng.normal(0, 0.002)
            g = (1 + 0.5 * np.sin(x)) * 1e-9  # A/V
            pts.append((x, y, 0.3 * len(pts) + 1.0))
            cur.append(g * (e + 0.2) + rng.normal(0, 2e-12, n))
    return np.array(pts), e, np.array(cur)


def encode(values: np.ndarray, gain: float, offset: float, data_type: int) -> np.ndarray:
    raw = (values - offset) / gain
    return np.round(raw) if data_type != 2 else raw


IV_CHANNELS = [("Bias", "V", 1e-4, 1, 0), ("Current", "nA", 1e-3, 0, 1)]


def iv_file(
    path: Path, data_type: int = 2, nx: int = 6, ny: int = 5, n: int = 200, **kw
) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """The I-V map as a file: the bias in V (gain 0.1 mV), the current in nA
    (gain 1 pA, offset 0.05 nA). Returns (path, points, potential, currents A)."""
    pts, e, cur = iv_map(nx, ny, n)
    raw = np.empty((len(pts), 2, n))
    raw[:, 0] = encode(e, 1e-4, 0.0, data_type)
    raw[:, 1] = encode(cur * 1e9, 1e-3, 0.05, data_type)
    data = raw.astype(DTYPES[data_type]).tobytes()
    hdr = spect_header(IV_CHANNELS, n, pts, offsets=(0.0, 0.05), data_type=data_type, **kw)
    return write_spect(path, hdr, data), pts, e, cur


def _nothing_written(folder: Path) -> None:
    assert not list(folder.glob("*.seccm.zarr")) and not list(folder.glob(".*"))


@pytest.mark.parametrize("data_type", [0, 1, 2])
def test_park_spectroscopy_map_becomes_a_cv_store(tmp_path: Path, data_type: int) -> None:
    src, pts, e, cur = iv_file(tmp_path / "iv.tiff", data_type)
    out = import_files([src], tmp_path / "iv.seccm.zarr")
    # what an int16 / int32 count holds: 1 pA and 0.1 mV; float32 keeps ~7 digits
    tol_i, tol_e = (1e-15, 1e-7) if data_type == 2 else (0.51e-12, 0.51e-4)
    with ScanStore.open(out) as s:
        assert s.problems() == []
        g = s.grid
        assert (g.nx, g.ny) == (6, 5) and g.pitch_um == pytest.approx(0.5, abs=0.01)
        res = s.results()
        assert np.allclose(res["x_um"], pts[:, 0], atol=1e-5)  # float32 in the file
        assert np.allclose(res["y_um"], pts[:, 1], atol=1e-5)
        assert np.allclose(res["t_start_s"], pts[:, 2], atol=1e-6)
        assert (res["status"] == OK).all()
        tr_i = s.array("traces/current_A")[:]
        tr_e = s.array("traces/potential_V")[:]
        assert tr_i.shape == (30, 200)
        assert np.abs(tr_i - cur).max() <= tol_i + 1e-6 * np.abs(cur).max()
        assert np.abs(tr_e - e).max() <= tol_e
        # the map value: the mean of each landing's last half (the backward sweep)
        assert np.allclose(res["value_A"], cur[:, 100:].mean(axis=1), atol=tol_i, rtol=1e-5)
        m = s.plan().measurement
        assert m.kind == "cv" and m.vertex_V == pytest.approx(0.6, abs=0.01)
        assert s.plan().potentiostat.sample_rate_Hz == pytest.approx(1000.0)
        imp = s.meta["imported"]
        hdr = imp["source_metadata"]["headers"]["iv.tiff"]["spectroscopy"]
        assert [c["name"] for c in hdr["channels"]] == ["Bias", "Current"]
        assert hdr["spect_type_name"] == "I-V" and hdr["n_points"] == 30
        assert hdr["start_voltage_V"] == pytest.approx(-0.2)
        assert imp["inferred"]["map_channel"] == "Current (nA) in iv.tiff"
        assert imp["inferred"]["potential_channel"] == "Bias (V)"
        # the voltammetric browsing reads it: the map at 0.4 V on the way up
        from napari_seccm.analysis.voltammetry import is_voltammetric, map_at

        assert is_voltammetric(s)
    at = map_at(out, 0.4, segment=0)
    order = np.argsort(np.abs(e[:100] - 0.4))[:2]  # the two samples around 0.4 V
    want = cur[:, order].mean(axis=1)
    assert np.allclose(at["point_current_A"], want, rtol=0.02, atol=3e-12)


def test_park_spectroscopy_store_is_analysed_and_exported_by_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src, _pts, _e, _cur = iv_file(tmp_path / "iv.tiff", 0)
    store = tmp_path / "iv.seccm.zarr"
    assert main(["import", str(src), "--out", str(store)]) == 0
    assert "30 landings" in capsys.readouterr().out
    assert main(["analyze", str(store), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_valid"] == 30 and result["measurement"] == "cv"
    assert main(["export", str(store), "--out", str(tmp_path / "map.gsf")]) == 0
    gsf = (tmp_path / "map.gsf").read_bytes()
    assert gsf.startswith(b"Gwyddion Simple Field") and b"XRes = 6" in gsf
    assert main(["export", str(store), "--traces", "--out", str(tmp_path / "tr.csv")]) == 0
    assert len((tmp_path / "tr.csv").read_text().splitlines()) == 1 + 30 * 200
    assert main(["export", str(store), "--potential", "0.4", "--out", str(tmp_path / "a.csv")]) == 0
    capsys.readouterr()
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["points_done"] == 30 and info["problems"] == [] and info["status"] == "complete"


def test_park_current_time_curves_give_a_ca_store(tmp_path: Path) -> None:
    """An I-t curve: the driving channel is the time (ms), no channel in
    volts; the rate comes from the time steps, the potential from the header."""
    n, pts = 50, np.array([(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (1.0, 1.0, 0.0)])
    t_ms = np.arange(n) * 0.5  # 2 kHz
    cur_pA = np.array([np.full(n, 10.0 * (k + 1)) for k in range(4)])
    raw = np.stack([np.broadcast_to(t_ms, (4, n)), cur_pA], axis=1).astype("<f4")
    chans = [("Time", "ms", 1.0, 1, 0), ("Current", "pA", 1.0, 0, 1)]
    hdr = spect_header(chans, n, pts, periods_s=(0.0, 0.0), spect_type=6)
    src = write_spect(tmp_path / "it.tiff", hdr, raw.tobytes(), sample_bias_V=0.3)
    out = import_files([src], tmp_path / "it.seccm.zarr")
    with ScanStore.open(out) as s:
        assert s.problems() == []
        assert s.plan().potentiostat.sample_rate_Hz == pytest.approx(2000.0)
        m = s.plan().measurement
        assert m.kind == "ca" and m.potential_V == pytest.approx(0.3)
        assert np.allclose(s.results()["value_A"], [1e-11, 2e-11, 3e-11, 4e-11])
        assert np.isnan(s.results()["t_start_s"]).all()  # the table's times are all 0
        # no channel in volts: the trace holds the held potential, and says so
        assert np.allclose(s.array("traces/potential_V")[:], 0.3)
        assert any("no spectroscopy channel in volts" in x for x in s.meta["imported"]["notes"])
    out2 = import_files([src], tmp_path / "b.seccm.zarr", options=ImportOptions(potential_V=-0.1))
    with ScanStore.open(out2) as s:
        assert s.plan().measurement.potential_V == pytest.approx(-0.1)
        assert np.allclose(s.array("traces/potential_V")[:], -0.1)


def _valid_parts(n_pts: int = 4, n: int = 10):
    pts = np.array([(float(k), 0.0, 0.0) for k in range(n_pts)])
    raw = np.zeros((n_pts, 2, n), "<f4")
    raw[:, 0] = np.linspace(0, 1, n)
    raw[:, 1] = 1.0
    return pts, raw


MALFORMED = {
    "truncated data": (
        {"cut": 8},
        r"bad\.tiff: the spectroscopy data \(tag 50439\) holds 312 bytes.*need 320: truncated",
    ),
    "point count disagrees": (
        {"n_points": 3},
        r"bad\.tiff: .*holds 320 bytes; the header's 3 points x 2 channels x 10 samples of "
        r"float32 need 240: the point count disagrees with the data",
    ),
    "point table short": (
        {"n_points": 5},
        r"bad\.tiff: Park spectroscopy header \(tag 50438\) is 1256 bytes, too short for the "
        r"positions of its 5 points \(needs 1268 bytes\)",
    ),
    "unknown unit": (
        {"channels": [("Bias", "V", 1.0, 1, 0), ("Current", "Amp$", 1.0, 0, 1)]},
        r"bad\.tiff: no spectroscopy channel in a current unit .*'Current' \(Amp\$: an "
        r"unknown unit\)",
    ),
    "current in volts": (
        {"channels": [("Bias", "V", 1.0, 1, 0), ("Current", "mV", 1.0, 0, 1)]},
        r"bad\.tiff: no spectroscopy channel in a current unit .*'Current' \(mV\)",
    ),
    "driving index": (
        {"driving": 2},
        r"bad\.tiff: Park spectroscopy header \(tag 50438\): driving channel index 2 is not "
        r"one of the 2 channels",
    ),
    "data type": (
        {"data_type": 7},
        r"bad\.tiff: Park spectroscopy header data_type 7 is unknown",
    ),
    "log scale": (
        {"log_scale": (0, 1)},
        r"bad\.tiff: channel 'Current' is stored as a log scale \(header flag "
        r"channel_log_scale\)",
    ),
    "no periods": (
        {"periods_s": (0.0, 0.0)},
        r"bad\.tiff: Park spectroscopy: forward / backward period 0.0 / 0.0 s and no time "
        r"channel: no sample rate",
    ),
    "header truncated": (
        {"header_cut": 400},
        r"bad\.tiff: Park spectroscopy header \(tag 50438\) is 856 bytes; the layout read "
        r"here has 1208 bytes",
    ),
    "data tag missing": (
        {"drop": 50439},
        r"bad\.tiff: a Park spectroscopy file \(data category 2\) without its data \(tag 50439\)",
    ),
    "header tag missing": (
        {"drop": 50438},
        r"bad\.tiff: .* without its spectroscopy header \(tag 50438\)",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_spectroscopy_is_refused_and_nothing_written(tmp_path: Path, case: str) -> None:
    kw, msg = MALFORMED[case]
    kw = dict(kw)
    pts, raw = _valid_parts()
    cut, header_cut, drop = kw.pop("cut", 0), kw.pop("header_cut", 0), kw.pop("drop", None)
    chans = kw.pop("channels", [("Bias", "V", 1.0, 1, 0), ("Current", "nA", 1.0, 0, 1)])
    hdr = spect_header(chans, 10, pts, **kw)
    data = raw.tobytes()
    src = write_spect(
        tmp_path / "bad.tiff",
        hdr[: len(hdr) - header_cut],
        data[: len(data) - cut],
        drop=drop,
    )
    before = src.read_bytes()
    with pytest.raises(ImportInputError, match=msg):
        import_files([src], tmp_path / "bad.seccm.zarr")
    assert src.read_bytes() == before
    _nothing_written(tmp_path)
    assert main(["import", str(src), "--out", str(tmp_path / "cli.seccm.zarr")]) == 2
    _nothing_written(tmp_path)


def test_spectroscopy_with_other_files_and_channel_options(tmp_path: Path) -> None:
    from test_importers import write_park

    src, *_ = iv_file(tmp_path / "iv.tiff", 2, nx=3, ny=2, n=20)
    img = write_park(tmp_path / "img.tiff", np.ones((2, 3)))
    with pytest.raises(ImportInputError, match=r"iv\.tiff: a spectroscopy file .* on its own"):
        import_files([img, src], tmp_path / "a.seccm.zarr")
    with pytest.raises(ImportInputError, match=r"iv\.tiff: no spectroscopy channel 'Ipix'"):
        import_files(
            [src], tmp_path / "a.seccm.zarr", options=ImportOptions(current_channel="Ipix")
        )
    with pytest.raises(ImportInputError, match=r"channel 'Bias' unit: unit 'V' is not a current"):
        import_files(
            [src], tmp_path / "a.seccm.zarr", options=ImportOptions(current_channel="Bias")
        )
    _nothing_written(tmp_path)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    nx=st.integers(1, 7),
    ny=st.integers(1, 6),
    half=st.integers(2, 60),
    data_type=st.sampled_from([0, 1, 2]),
    pitch=st.sampled_from([0.25, 0.5, 2.0]),
)
def test_any_map_size_round_trips(
    tmp_path_factory: pytest.TempPathFactory, nx: int, ny: int, half: int, data_type: int, pitch
) -> None:
    if nx * ny < 2:
        nx = 2
    tmp = tmp_path_factory.mktemp("spect")
    n = 2 * half
    pts, e, cur = iv_map(nx, ny, n, pitch=pitch, seed=nx * 100 + ny)
    raw = np.empty((len(pts), 2, n))
    raw[:, 0] = encode(e, 1e-4, 0.0, data_type)
    raw[:, 1] = encode(cur * 1e12, 0.25, 0.0, data_type)
    chans = [("Bias", "V", 1e-4, 1, 0), ("Current", "pA", 0.25, 0, 1)]
    hdr = spect_header(chans, n, pts, periods_s=(half / 1000.0, half / 1000.0), data_type=data_type)
    src = write_spect(tmp / "m.tiff", hdr, raw.astype(DTYPES[data_type]).tobytes())
    out = import_files([src], tmp / "m.seccm.zarr")
    with ScanStore.open(out) as s:
        assert s.problems() == []
        g = s.grid
        assert (g.nx, g.ny) == (nx, ny) and g.pitch_um == pytest.approx(
            pitch, abs=0.015
        )  # 2 nm noise
        assert s.n_samples == n and s.array("traces/current_A").shape == (nx * ny, n)
        step = 0.25e-12 if data_type != 2 else 0.0
        got = s.array("traces/current_A")[:]
        assert np.abs(got - cur).max() <= step / 2 + 1e-6 * np.abs(cur).max() + 1e-18
        assert np.allclose(s.results()["x_um"], pts[:, 0], atol=1e-4)
        assert s.plan().measurement.kind == "cv"
