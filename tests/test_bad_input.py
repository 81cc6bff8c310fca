"""Every bad input a new user can give (a plan file, a CLI argument, an image
file) ends in one clear line naming the value, the field and the limit, and
nothing is created or moved."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from pydantic import ValidationError

from napari_seccm.acquisition.plan import PlanInputError, ScanPlan
from napari_seccm.cli import main
from napari_seccm.io.images import (
    ImageReadError,
    ImageTooLargeError,
    load_image,
    read_images,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tem"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/tem")
DM3 = DATA / "multi_signal.dm3"
needs_dm3 = pytest.mark.skipif(not DM3.exists(), reason=f"test data not found in {DATA}")


def _scan(tmp_path: Path, plan: Path | str, capsys: Any, *extra: str) -> str:
    """``napari-seccm scan --plan`` in-process: exit code 2, one error line, no
    store made (the rig is never loaded: the plan is checked first)."""
    out = tmp_path / "out.seccm.zarr"
    code = main(["scan", "--plan", str(plan), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert not out.exists() and not (tmp_path / "out").exists()
    return err


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------ plans
def test_broken_yaml_names_file_line_and_problem(tmp_path: Path, capsys: Any) -> None:
    p = _write(tmp_path, "broken.yaml", "name: x\npitch_um: [1\n")
    err = _scan(tmp_path, p, capsys)
    assert "broken.yaml: not valid YAML at line 3" in err and "flow sequence" in err
    assert err.count("\n") == 1


def test_tabs_in_yaml_are_named(tmp_path: Path, capsys: Any) -> None:
    p = _write(tmp_path, "tabs.yaml", "name: x\n\tpitch_um: 1\n")
    err = _scan(tmp_path, p, capsys)
    assert "tabs.yaml: not valid YAML at line 2, column 1" in err and "'\\t'" in err


def test_a_directory_as_plan(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "plan.yaml").mkdir()
    err = _scan(tmp_path, tmp_path / "plan.yaml", capsys)
    assert "plan.yaml is a directory, not a plan file" in err


def test_a_binary_file_as_plan(tmp_path: Path, capsys: Any) -> None:
    p = tmp_path / "plan.yaml"
    p.write_bytes(b"\xff\xfe\x00binary")
    err = _scan(tmp_path, p, capsys)
    assert "is not a text plan file: byte 0xff at offset 0 is not UTF-8" in err


def test_a_missing_plan(tmp_path: Path, capsys: Any) -> None:
    err = _scan(tmp_path, tmp_path / "nope.yaml", capsys)
    assert "plan file" in err and "nope.yaml does not exist" in err


def test_billion_laughs_is_refused_at_once(tmp_path: Path, capsys: Any) -> None:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for n in "bcdefghi":
        text += f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = n
    assert len(text) < 1024
    p = _write(tmp_path, "bomb.yaml", text)
    err = _scan(tmp_path, p, capsys)
    assert "expands to more than 1,000,000 values" in err and "limit of 1,000,000" in err
    with pytest.raises(PlanInputError, match="expands to more than 100 values"):
        ScanPlan.from_yaml(text, max_nodes=100)


def test_recursive_alias_and_deep_nesting(tmp_path: Path) -> None:
    with pytest.raises(PlanInputError, match="contains itself through an alias"):
        ScanPlan.from_yaml("name: &a [*a]\n")
    with pytest.raises(PlanInputError, match="nested more than 32 levels deep"):
        ScanPlan.from_yaml("name: " + "[" * 2000 + "]" * 2000 + "\n")
    with pytest.raises(PlanInputError, match="nested too deeply"):
        ScanPlan.from_json('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_a_plan_file_above_the_size_limit(tmp_path: Path, capsys: Any) -> None:
    p = _write(tmp_path, "big.yaml", "name: x\n" + "#" * 5_000_000 + "\n")
    err = _scan(tmp_path, p, capsys)
    assert "above the limit for a plan file of 4,194,304 bytes" in err
    with pytest.raises(PlanInputError, match="above the limit of 10 bytes"):
        ScanPlan.from_yaml("name: a long name\n", max_bytes=10)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("pitch_um: .inf\n", "pitch_um must be finite (um), got inf"),
        ("pitch_um: 1e999\n", "pitch_um must be finite (um), got '1e999'"),
        ("safety:\n  z_floor_um: .nan\n", "safety.z_floor_um must be finite (um), got nan"),
        ("safety:\n  z_floor_um: nan\n", "safety.z_floor_um must be finite (um), got 'nan'"),
        (
            "area: {kind: points, points_um: [[0, 0], [1, .inf]]}\n",
            "area.points.points_um[1][1] must be finite (um), got inf",
        ),
        ("approach:\n  threshold_A: -.inf\n", "approach.threshold_A must be finite (A), got -inf"),
    ],
)
def test_non_finite_numbers_are_refused_by_field(
    tmp_path: Path, capsys: Any, text: str, field: str
) -> None:
    """A NaN Z floor used to disable the floor; 1e999 used to become inf."""
    err = _scan(tmp_path, _write(tmp_path, "p.yaml", text), capsys)
    assert field in err, err
    data = json.dumps({"safety": {"z_floor_um": float("nan")}})  # JSON's NaN
    err = _scan(tmp_path, _write(tmp_path, "p.json", data), capsys)
    assert "safety.z_floor_um must be finite (um), got nan" in err
    p = ScanPlan()
    with pytest.raises(ValidationError, match="z_floor_um must be finite"):
        p.safety.z_floor_um = math.nan  # assignment too


def test_huge_sizes_do_not_overflow(tmp_path: Path, capsys: Any) -> None:
    p = _write(tmp_path, "p.yaml", "area: {kind: rectangle, width_um: 1e308, height_um: 1e308}\n")
    err = _scan(tmp_path, p, capsys)
    assert "1e+308 x 1e+308 um at pitch 0.3 um" in err and "maximum of 10,000,000" in err
    p = _write(tmp_path, "p.yaml", "pitch_um: 1e308\n")
    err = _scan(tmp_path, p, capsys)
    assert "pitch_um: Input should be less than or equal to 1000 (got '1e308')" in err
    e = _write(tmp_path, "e.yaml", "area: {kind: edges, x_min_um: -1e308, x_max_um: 1e308,")
    e.write_text(e.read_text() + " y_min_um: 0, y_max_um: 1}\n")
    err = _scan(tmp_path, e, capsys)
    assert "spans inf x 1 um: too large to map" in err


def test_duplicate_keys_name_the_key_and_line(tmp_path: Path, capsys: Any) -> None:
    p = _write(
        tmp_path, "dup.yaml", "name: a\npitch_um: 1\nsafety:\n  z_floor_um: 0\npitch_um: 2\n"
    )
    err = _scan(tmp_path, p, capsys)
    assert "dup.yaml: duplicate key 'pitch_um' at line 5 (first at line 2)" in err
    p = _write(tmp_path, "dup.json", '{"pitch_um": 1,\n "name": "a",\n "pitch_um": 2}')
    err = _scan(tmp_path, p, capsys)
    assert "dup.json: duplicate key 'pitch_um' at line 3" in err
    # a merge key is not a duplicate: it is how YAML overrides on purpose
    plan = ScanPlan.from_yaml(
        "area:\n  <<: {kind: rectangle, width_um: 6, height_um: 6}\n  width_um: 3\n"
    )
    assert (plan.area.width_um, plan.area.height_um) == (3, 6)


def test_huge_polygon_refused_before_its_grid_is_built(tmp_path: Path, capsys: Any) -> None:
    import tracemalloc

    text = "area: {kind: polygon, vertices_um: [[0, 0], [1e5, 0], [1e5, 1e5]]}\n"
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError, match=r"1\.111e\+11 pixels.*maximum of 100,000,000"):
            ScanPlan.from_yaml(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # the 6 GiB grid was never allocated
    # a polygon whose area holds too many points, its bounding box allowed
    big = "area: {kind: polygon, vertices_um: [[0, 0], [2000, 0], [2000, 2000], [0, 2000]]}\n"
    err = _scan(tmp_path, _write(tmp_path, "p.yaml", big), capsys)
    assert "polygon's area 4e+06 um^2 at pitch 0.3 um holds about 4.444e+07 points" in err
    assert "maximum of 10,000,000" in err


def test_a_plan_that_is_not_a_mapping(tmp_path: Path, capsys: Any) -> None:
    err = _scan(tmp_path, _write(tmp_path, "p.yaml", "- 1\n- 2\n"), capsys)
    assert "must hold a mapping of fields (name: value), got a list" in err
    err = _scan(tmp_path, _write(tmp_path, "p.yaml", ""), capsys)
    assert "got nothing" in err


# ------------------------------------------------------------ CLI numbers
@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--max-hours", "nan"], "--max-hours must be a finite number (h), got 'nan'"),
        (["--max-hours", "inf"], "--max-hours must be a finite number (h), got 'inf'"),
        (["--max-hours", "0"], "--max-hours must lie in (0, 8760] h, got 0 h"),
        (["--max-hours", "1e9"], "--max-hours must lie in (0, 8760] h, got 1e+09 h"),
        (["--max-hours", "two"], "--max-hours takes a number (h), got 'two'"),
    ],
)
def test_scan_max_hours_is_checked(tmp_path: Path, capsys: Any, args: list[str], msg: str) -> None:
    """--max-hours nan used to start a 705-hour scan."""
    plan = _write(tmp_path, "p.yaml", "pitch_um: 0.01\n")  # 1.4 M points
    out = tmp_path / "o.seccm.zarr"
    with pytest.raises(SystemExit) as e:
        main(["scan", "--plan", str(plan), "--out", str(out), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["demo", "--pitch", "nan"], "--pitch must be a finite number (um), got 'nan'"),
        (["demo", "--iv-x", "inf"], "--iv-x must be a finite number (um), got 'inf'"),
        (["demo", "--max-hours", "-1"], "--max-hours must lie in (0, 8760] h, got -1 h"),
        (["analyze", "S", "--r2-min", "nan"], "--r2-min must be a finite number, got 'nan'"),
        (["analyze", "S", "--r2-min", "2"], "--r2-min must lie in [0, 1], got 2"),
        (["analyze", "S", "--n-boot", "1.5"], "--n-boot takes an integer, got '1.5'"),
        (["analyze", "S", "--anisotropy", "0"], "--anisotropy must be above 0, got 0"),
        (["analyze", "S", "--min-period-um=-inf"], "--min-period-um must be a finite"),
        (["analyze", "S", "--settle-s", "-1"], "--settle-s must be at least 0 s, got -1 s"),
        (["export", "S", "--out", "x.gsf", "--tip-radius-nm", "nan"], "--tip-radius-nm must"),
        (["export", "S", "--out", "x.gsf", "--asr-ohm-cm2", "-1"], "--asr-ohm-cm2 must be at"),
        (
            ["export", "S", "--out", "x.gsf", "--potential-range-V", "0", "1e400"],
            "--potential-range-V must be a finite number (V), got '1e400'",
        ),
        (["analyze", "S", "--settle-fraction", "1"], "--settle-fraction must lie in [0, 1)"),
    ],
)
def test_every_numeric_argument_is_checked(
    tmp_path: Path, capsys: Any, monkeypatch: Any, argv: list[str], msg: str
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [str(tmp_path / "s.seccm.zarr") if a == "S" else a for a in argv]
    if argv[0] == "demo":
        argv += ["--out", str(tmp_path / "d")]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_plan_out_a_directory(tmp_path: Path, capsys: Any) -> None:
    assert main(["plan", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "is a directory" in err
    assert main(["plan", "--out", str(tmp_path / "no" / "p.yaml")]) == 2
    assert "the folder" in capsys.readouterr().err and not (tmp_path / "no").exists()


# ------------------------------------------------------------------ images
def _velox(path: Path, *, complex_signal: bool = True) -> None:
    """A minimal Velox EMD (HDF5, as Velox lays it out): a HAADF image and a
    DPC image stored as (realFloat, imagFloat) pairs, as Velox stores them."""
    h5py = pytest.importorskip("h5py")

    def md(det: str, idx: int) -> np.ndarray:
        d = {
            "BinaryResult": {
                "PixelSize": {"width": "2e-10", "height": "2e-10"},
                "PixelUnitX": "m",
                "Offset": {"x": "0", "y": "0"},
                "DetectorIndex": str(idx),
            },
            "Detectors": {f"Detector-{idx}": {"DetectorName": det}},
            "Acquisition": {},
            "Scan": {},
            "CustomProperties": {},
        }
        return np.frombuffer(json.dumps(d).encode(), dtype=np.uint8).reshape(-1, 1)

    with h5py.File(path, "w") as f:
        version = json.dumps({"format": "Velox", "version": 11}).encode()
        f.create_dataset("Version", data=np.array([version]))
        img = f.create_group("Data/Image")
        g = img.create_group("a0")
        g.create_dataset("Data", data=np.arange(48, dtype=np.uint16).reshape(6, 8, 1))
        g.create_dataset("Metadata", data=md("HAADF", 0))
        if complex_signal:
            g2 = img.create_group("b1")
            dt = np.dtype([("realFloat", "<f4"), ("imagFloat", "<f4")])
            a = np.zeros((6, 8, 1), dt)
            a["realFloat"], a["imagFloat"] = 3.0, 4.0
            g2.create_dataset("Data", data=a)
            g2.create_dataset("Metadata", data=md("DPC", 1))


def test_velox_complex_signal_opens_as_magnitude_and_phase(tmp_path: Path) -> None:
    p = tmp_path / "dpc.emd"
    _velox(p)
    layers = read_images(str(p))
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["dpc HAADF", "dpc DPC magnitude", "dpc DPC phase"]
    assert not any(np.iscomplexobj(d) for d, _, _ in layers)  # napari shows them
    mag = load_image(p, signal="DPC magnitude")
    assert np.allclose(mag.data, 5.0) and mag.pixel_size_um == pytest.approx((2e-4, 2e-4))
    phase = load_image(p, signal="DPC phase")
    assert np.allclose(phase.data, math.atan2(4, 3))
    assert load_image(p).signal_title == "HAADF"


def _huge_tiff(path: Path, side: int = 100_000) -> None:
    """A valid small TIFF whose header then claims side x side pixels."""
    tifffile.imwrite(path, np.zeros((4, 4), np.uint16))
    b = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as t:
        offsets = [t.offset for t in t.pages[0].tags.values() if t.code in (256, 257)]
    for off, code in zip(offsets, (256, 257), strict=True):
        struct.pack_into("<HHII", b, off, code, 4, 1, side)  # LONG, count 1
    path.write_bytes(bytes(b))


def test_tiff_header_claiming_a_huge_image_is_refused_before_reading(tmp_path: Path) -> None:
    import tracemalloc

    p = tmp_path / "huge.tif"
    _huge_tiff(p)
    assert p.stat().st_size < 1024
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError) as e:
            load_image(p, pixel_size_um=0.01)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert msg.startswith("huge.tif: the TIFF header declares 100000 x 100000 pixels of uint16")
    assert "18.6 GiB, above the limit of 4 GiB" in msg and "max_bytes" in msg
    assert "\n" not in msg and peak < 50e6
    # the limit is a keyword: a small one refuses a small image, by name
    small = tmp_path / "s.tif"
    tifffile.imwrite(small, np.zeros((64, 64), np.uint16))
    with pytest.raises(ImageTooLargeError, match=r"64 x 64 pixels of uint16, 8,192 bytes.*1,000"):
        load_image(small, pixel_size_um=0.01, max_bytes=1000)
    assert load_image(small, pixel_size_um=0.01, max_bytes=10_000).data.shape == (64, 64)


@needs_dm3
@pytest.mark.parametrize("keep", [2000, 300_000])
def test_truncated_dm3_names_the_file(tmp_path: Path, keep: int) -> None:
    p = tmp_path / "cut.dm3"
    p.write_bytes(DM3.read_bytes()[:keep])
    with pytest.raises(ImageReadError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith("cut.dm3: cannot be read as a DM file") and "truncated" in msg
    assert "\n" not in msg


def test_renamed_file_as_dm3_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "really_a_tiff.dm3"
    tifffile.imwrite(p, np.zeros((4, 4), np.uint16))
    with pytest.raises(ImageReadError, match=r"^really_a_tiff\.dm3: cannot be read as a DM"):
        load_image(p)
    t = tmp_path / "notes.tif"
    t.write_text("not an image")
    with pytest.raises(ImageReadError, match=r"^notes\.tif: cannot be read as a TIFF"):
        load_image(t)
    e = tmp_path / "notes.emd"
    shutil.copy(t, e)
    with pytest.raises(ImageReadError, match=r"^notes\.emd: cannot be read as an EMD"):
        load_image(e)
