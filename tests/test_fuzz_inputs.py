"""Fuzzing the inputs a user hands the program: plan text, CLI arguments,
Micro-Manager configs and image files. Each either works or fails with one clear line; nothing else
(no other exception, no traceback, no hang). Derandomized: the same cases
every run."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from napari_seccm.acquisition.plan import ScanPlan, validation_lines
from napari_seccm.cli import main
from napari_seccm.io.images import ImageReadError, MissingScaleError, load_image

FUZZ = settings(
    derandomize=True,
    deadline=None,  # each case is bounded by the small limits below
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
#: small limits, so that any case the fuzz builds is refused or read at once
LIMITS = {"max_bytes": 20_000, "max_nodes": 2_000, "max_depth": 12}


def _assert_one_line_plan_error(e: BaseException) -> None:
    assert isinstance(e, ValueError), f"{type(e).__name__}: {e}"
    if isinstance(e, ValidationError):
        lines = validation_lines(e, with_input=True)
        assert lines and all("\n" not in x and x.strip() for x in lines), lines
        assert all(len(x) < 600 for x in lines), lines
    else:
        assert "\n" not in str(e) and str(e).strip(), repr(str(e))


def _check_plan(plan: ScanPlan) -> None:
    """A plan that loads is usable: its points, duration and limits are finite."""
    assert 1 <= plan.n_points() <= 10_000_000
    assert math.isfinite(plan.estimate_time_s())
    assert all(math.isfinite(v) for v in plan.potential_limits_V())


# ----------------------------------------------------------- (a) plans
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e-300, 1e308, -1e308, 2**64, 10**30, 0.3, 12.0, 1.0]),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0.5", "", "abc", "1_000"]),
)
_scalars = st.one_of(_numbers, st.booleans(), st.none(), st.text(max_size=8))
_FIELDS = {
    "": [
        "name",
        "pitch_um",
        "order",
        "shuffle_seed",
        "hold_s",
        "retract_um",
        "readout_start_s",
        "readout_end_s",
        "footprint_diameter_um",
        "flyback_extra_um",
        "area",
        "measurement",
        "approach",
        "safety",
        "potentiostat",
        "pipette",
        "surface",
        "bogus",
    ],
    "area": [
        "kind",
        "center_x_um",
        "width_um",
        "height_um",
        "x_min_um",
        "x_max_um",
        "y_min_um",
        "y_max_um",
        "points_um",
        "vertices_um",
    ],
    "measurement": [
        "kind",
        "potential_V",
        "duration_s",
        "start_V",
        "end_V",
        "vertex_V",
        "scan_rate_V_per_s",
        "cycles",
        "steps",
        "hold_s",
    ],
    "approach": ["potential_V", "threshold_A", "slow_speed_um_per_s", "slow_zone_um"],
    "safety": ["z_floor_um", "max_consecutive_failures", "max_tilt_deg"],
    "potentiostat": ["sample_rate_Hz", "filter_Hz", "current_range_A"],
    "pipette": ["tip_radius_nm", "footprint_radius_nm"],
    "surface": ["model", "min_landings"],
}
_KINDS = {
    "area": ["rectangle", "edges", "points", "polygon", "circle"],
    "measurement": ["ca", "lsv", "cv", "staircase", "eis"],
}
_points = st.lists(st.tuples(_numbers, _numbers), min_size=0, max_size=6)
_junk = st.recursive(
    _scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def _plan_dicts(draw: Any, section: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(_FIELDS[section]), max_size=6, unique=True)):
        if key in _FIELDS and section == "":
            value = draw(st.one_of(_plan_dicts(key), _junk))
        elif key == "kind":
            value = draw(st.sampled_from(_KINDS.get(section, ["x"])))
        elif key in ("points_um", "vertices_um"):
            value = draw(st.one_of(_points.map(lambda p: [list(x) for x in p]), _junk))
        elif key in ("order", "model"):
            value = draw(st.sampled_from(["raster", "serpentine", "shuffled", "plane", "none"]))
        else:
            value = draw(st.one_of(_numbers, _junk))
        out[key] = value
    return out


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, float):
        return (
            ".nan"
            if math.isnan(v)
            else (".inf" if v > 0 else "-.inf")
            if math.isinf(v)
            else repr(v)
        )
    return json.dumps(v)


@st.composite
def _plan_yaml(draw: Any) -> str:
    """YAML text: a dumped plan dict, plus duplicate keys, anchors and aliases,
    YAML-only scalars (.nan, .inf), tabs, and random truncation."""
    data = draw(_plan_dicts())
    lines = [
        f"{k}: {json.dumps(v) if not isinstance(v, float) else _yaml_scalar(v)}"
        for k, v in data.items()
    ]
    extras = draw(
        st.lists(
            st.sampled_from(
                [
                    "pitch_um: 0.5",  # maybe a duplicate
                    "safety: {z_floor_um: .nan}",
                    "name: &a [1, 2, 3]",
                    "bogus: [*a, *a, *a]",
                    "area: &r {kind: rectangle, width_um: 3}",
                    "measurement: *r",
                    "approach: {<<: {potential_V: 0.5}, potential_V: .inf}",
                    "\tpitch_um: 1",
                    "pitch_um: [1",
                    "x: !!python/object:os.system {}",
                    "a: &x [*x]",
                    "name: " + "[" * 40 + "]" * 40,
                    "l0: &l0 [0,0,0,0,0,0,0,0,0,0]\nl1: &l1 [*l0,*l0,*l0,*l0,*l0,*l0,*l0,*l0]\n"
                    "l2: &l2 [*l1,*l1,*l1,*l1,*l1,*l1,*l1,*l1]\nl3: [*l2,*l2,*l2,*l2,*l2,*l2]",
                    "pitch_um: 1" + "0" * 5000,
                    "width_um: 1e308",
                ]
            ),
            max_size=3,
        )
    )
    text = "\n".join(lines + extras) + "\n"
    cut = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=len(text))))
    return text if cut is None else text[:cut]


def _load_or_refuse(load: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            plan = load()
        except Exception as e:
            _assert_one_line_plan_error(e)
            return
    _check_plan(plan)


CASES: dict[str, int] = {}


def _count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


@settings(FUZZ, max_examples=300)
@given(text=_plan_yaml())
def test_fuzz_plan_yaml(text: str) -> None:
    _count("plan_yaml")
    _load_or_refuse(lambda: ScanPlan.from_yaml(text, **LIMITS))


@settings(FUZZ, max_examples=200)
@given(data=_plan_dicts(), dup=st.sampled_from([None, "pitch_um", "name", "area"]))
def test_fuzz_plan_json(data: dict[str, Any], dup: str | None) -> None:
    _count("plan_json")
    text = json.dumps(data)  # NaN/Infinity written as JSON's extension
    if dup is not None:
        text = text[:-1] + (", " if data else "") + f'"{dup}": 1}}'
    limits = {k: v for k, v in LIMITS.items() if k != "max_nodes"}
    _load_or_refuse(lambda: ScanPlan.from_json(text, **limits))
    _load_or_refuse(lambda: ScanPlan.model_validate(data))


# ------------------------------------------------------------------ (b) CLI
_arg_values = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e308", "1e-320", "2", "0.5", "x", ""]),
    st.floats().map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
)
_OPTIONS = {
    "plan": [("--out", "file"), ("--overwrite", None)],
    "info": [("--json", None)],
    "analyze": [
        ("--r2-min", "num"),
        ("--n-boot", "num"),
        ("--anisotropy", "num"),
        ("--min-period-um", "num"),
        ("--max-period-um", "num"),
        ("--settle-fraction", "num"),
        ("--settle-s", "num"),
        ("--rest-potential-V", "num"),
        ("--potential-range-V", "num2"),
        ("--tip-radius-nm", "num"),
        ("--pad-edge-x-um", "num"),
        ("--json", None),
        ("--branch", "branch"),
    ],
    "export": [
        ("--out", "file"),
        ("--format", "fmt"),
        ("--channel", "word"),
        ("--points", "word"),
        ("--traces", None),
        ("--r2-min", "num"),
        ("--asr-ohm-cm2", "num"),
    ],
    "scan": [("--max-hours", "num"), ("--plan", "plan"), ("--overwrite", None)],
}


@st.composite
def _argv(draw: Any, tmp: Path) -> list[str]:
    cmd = draw(st.sampled_from(sorted(_OPTIONS)))
    argv = [cmd]
    if cmd in ("info", "analyze", "export"):
        argv.append(draw(st.sampled_from([str(tmp / "none.seccm.zarr"), str(tmp), "-", ""])))
    if cmd == "export":
        argv += ["--out", str(tmp / "out" / "e.gsf")]
    if cmd == "scan":
        argv += ["--out", str(tmp / "out" / "s.seccm.zarr")]
    for flag, kind in draw(st.lists(st.sampled_from(_OPTIONS[cmd]), max_size=4, unique=True)):
        argv.append(flag)
        if kind in ("num", "num2"):
            vals = [draw(_arg_values) for _ in range(2 if kind == "num2" else 1)]
            argv[-1] = f"{flag}={vals[0]}" if kind == "num" else flag
            if kind == "num2":
                argv += vals
        elif kind == "file":
            argv[-1] = f"{flag}=" + draw(st.sampled_from([str(tmp), str(tmp / "no" / "x"), ""]))
        elif kind == "plan":
            argv.append(
                draw(st.sampled_from([str(tmp / "p.yaml"), str(tmp / "bad.yaml"), str(tmp)]))
            )
        elif kind == "fmt":
            argv.append(draw(st.sampled_from(["gsf", "csv", "jpeg"])))
        elif kind == "branch":
            argv.append(draw(st.sampled_from(["up", "sideways"])))
        elif kind == "word":
            argv.append(draw(st.sampled_from(["current", "1,2,x", "-5", "9" * 30])))
    return argv


def test_fuzz_cli_arguments(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("pitch_um: 0.01\n")  # refused by --max-hours
    (tmp_path / "bad.yaml").write_text("pitch_um: [\n")

    @settings(FUZZ, max_examples=250)
    @given(argv=_argv(tmp_path))
    def run(argv: list[str]) -> None:
        _count("cli")
        if argv[0] == "scan" and "--plan" not in argv:
            argv += ["--plan", str(tmp_path / "p.yaml")]  # never the default plan
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: a bad option
            code = e.code
        out = capsys.readouterr()
        assert code in (0, 2), (argv, code, out.err)
        assert "Traceback" not in out.err, (argv, out.err)
        if code == 2:
            assert out.err.startswith("error: ") and out.err.strip(), (argv, out.err)
        assert not (tmp_path / "out").exists(), argv  # no store, no export made
        assert not (tmp_path / "no").exists(), argv

    run()


# --------------------------------------------------------------- (c) images
def _seed_files(tmp: Path) -> dict[str, bytes]:
    """Small valid files of each kind the importer reads."""
    seeds: dict[str, bytes] = {}
    t = tmp / "seed.tif"
    tifffile.imwrite(
        t,
        np.arange(64, dtype=np.uint16).reshape(8, 8),
        resolution=(1e4, 1e4),
        resolutionunit="CENTIMETER",
    )
    seeds[".tif"] = t.read_bytes()
    from test_bad_input import DM3, _velox

    e = tmp / "seed.emd"
    _velox(e)
    seeds[".emd"] = e.read_bytes()
    if DM3.exists():
        seeds[".dm3"] = DM3.read_bytes()[:4096]  # its header and tag tree only
    return seeds


@st.composite
def _mutated(draw: Any, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[suffix])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "set32", "truncate", "insert"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set32" and i + 4 <= len(data):
            v = draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 100_000]))
            data[i : i + 4] = v.to_bytes(4, "little")
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return suffix, bytes(data)


def test_fuzz_image_bytes(tmp_path: Path) -> None:
    seeds = _seed_files(tmp_path)

    @settings(FUZZ, max_examples=250)
    @given(case=_mutated(seeds))
    def run(case: tuple[str, bytes]) -> None:
        _count("images")
        suffix, data = case
        p = tmp_path / f"fuzz{suffix}"
        p.write_bytes(data)
        try:
            img = load_image(p, allow_unscaled=True, max_bytes=10_000_000)
        except (ImageReadError, MissingScaleError, ValueError) as e:
            msg = str(e)
            assert p.name in msg and "\n" not in msg, (type(e).__name__, msg)
            return
        assert img.data.ndim >= 2 and not np.iscomplexobj(img.data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()


# -------------------------------------------------------------- (d) configs
_CFG_TOKENS = [
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "0",
    "-1",
    "1e-300",
    "",
    "abc",
    "1,2",
    "PiezoZ",
    "SECCM",
    "Latched",
    "On",
    "9" * 40,
    "\u00e9\u00df",
    "\x00",
]


@st.composite
def _mutated_config(draw: Any, lines: list[str]) -> str:
    """The shipped simulated config with a few of its lines changed: a field
    replaced, a line dropped, doubled, moved or cut short, a line added."""
    out = list(lines)
    for _ in range(draw(st.integers(1, 3))):
        if not out:
            break
        i = draw(st.integers(0, len(out) - 1))
        op = draw(st.sampled_from(["field", "field", "field", "drop", "double", "cut", "add"]))
        if op == "field":
            fields = out[i].split(",")
            k = draw(st.integers(0, len(fields) - 1))
            fields[k] = draw(st.one_of(st.sampled_from(_CFG_TOKENS), st.text(max_size=6)))
            out[i] = ",".join(fields)
        elif op == "drop":
            del out[i]
        elif op == "double":
            out.insert(i, out[i])
        elif op == "cut":
            out[i] = out[i][: draw(st.integers(0, len(out[i])))]
        else:
            out.insert(i, draw(st.text(max_size=30)).replace("\n", " "))
    return "\n".join(out) + "\n"


def test_fuzz_micromanager_configs(tmp_path: Path) -> None:
    """A config loads into a whole, initialized rig with sane travel, or is
    refused with a message naming the file and what is wrong; a refused load
    leaves no device loaded (no half-initialized rig to move)."""
    from napari_seccm.configs import config_path, load_core
    from napari_seccm.devices._hub import live_hubs

    lines = config_path("seccm_simulated.cfg").read_text().splitlines()

    def initialized_hubs() -> int:
        return sum(1 for h in live_hubs() if h.controller is not None)

    base = initialized_hubs()

    @settings(FUZZ, max_examples=120)
    @given(text=_mutated_config(lines))
    def run(text: str) -> None:
        _count("configs")
        p = tmp_path / "fuzz.cfg"
        p.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            core = load_core(p, signals="psygnal")
        except Exception as e:
            msg = str(e)
            assert msg.strip() and "fuzz.cfg" in msg, (type(e).__name__, msg)
            assert initialized_hubs() == base, "a refused config left a hub loaded"
            return
        try:
            for dev in core.getLoadedDevices():
                if dev != "Core":
                    assert int(core.getDeviceInitializationState(dev)) == 1, dev
            if core.getFocusDevice():
                z = core.getFocusDevice()
                if core.hasProperty(z, "ZMin_um"):
                    assert float(core.getProperty(z, "ZMin_um")) < float(
                        core.getProperty(z, "ZMax_um")
                    )
                assert math.isfinite(core.getPosition())
        finally:
            core.unloadAllDevices()

    run()


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (("ZMin_um,0.0", "ZMin_um,200"), "ZMin_um = 200 um is not below ZMax_um = 100 um"),
        (("XMax_um,50.0", "XMax_um,-60"), "XMin_um = -50 um is not below XMax_um = -60 um"),
        (("Approach_Speed_um_per_s,1.0", "Approach_Speed_um_per_s,nan"), "Value nan"),
    ],
    ids=["z-min-above-max", "x-max-below-min", "nan-speed"],
)
def test_a_config_whose_device_cannot_start_loads_nothing(
    tmp_path: Path, edit: tuple[str, str], words: str
) -> None:
    """A device that fails to initialize fails the load (UniMMCore alone logs
    it and goes on with the device loaded but not initialized); nothing stays
    loaded, and the message names the file, the device and the values."""
    from napari_seccm.configs import config_path, load_core
    from napari_seccm.devices._hub import live_hubs

    before = sum(1 for h in live_hubs() if h.controller is not None)
    p = tmp_path / "bad.cfg"
    p.write_text(config_path("seccm_simulated.cfg").read_text().replace(*edit))
    with pytest.raises(RuntimeError) as err:
        load_core(p, signals="psygnal")
    assert "bad.cfg" in str(err.value) and words in str(err.value), str(err.value)
    assert sum(1 for h in live_hubs() if h.controller is not None) == before


def test_zz_report_case_counts() -> None:
    """The number of cases each fuzz test ran (printed with -s)."""
    print("fuzz cases:", CASES)
    if CASES:
        assert all(n > 0 for n in CASES.values())
    else:
        pytest.skip("fuzz tests not run in this session")
