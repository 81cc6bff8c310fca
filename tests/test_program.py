"""The measurement program (``napari_seccm.model``): properties over many
programs (hypothesis), the JSON form of the potentiostat's ``Waveform``
property, sampling identical to the first stores', and refusals that name the
bad value; the probe's pipette geometry."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from napari_seccm.model import Hold, PipetteGeometry, ProbeSpec, Program, Ramp

# ------------------------------------------------------------- strategies
potentials = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False, allow_infinity=False)
durations = st.floats(min_value=1e-6, max_value=0.2, allow_nan=False, allow_infinity=False)
rates = st.sampled_from([100.0, 1000.0, 1234.5, 5000.0, 10_000.0, 100_000.0]) | st.floats(
    min_value=100.0, max_value=100_000.0
)


@st.composite
def segments(draw: st.DrawFn) -> Hold | Ramp:
    t = draw(durations)
    if draw(st.booleans()):
        return Hold(draw(potentials), t)
    return Ramp(draw(potentials), draw(potentials), t)


programs = st.lists(segments(), min_size=1, max_size=8).map(Program)

# non-numbers and non-finite numbers, each refused by name
not_finite = st.sampled_from([math.nan, math.inf, -math.inf])
not_numbers = st.sampled_from(["1.0", None, True, [1.0], {"v": 1}])
not_positive = st.floats(max_value=0.0, allow_nan=False, allow_infinity=False)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def legacy_sample(segs: list[dict], fs: float) -> np.ndarray:
    """The sampling of the first stores (the simulator's ``Waveform.sample``
    before the model existed), verbatim: results must not change."""
    parts = []
    carry = 0.0
    for seg in segs:
        n_exact = seg["t"] * fs + carry
        n = int(round(n_exact))
        carry = n_exact - n
        if n <= 0:
            continue
        if "hold" in seg:
            parts.append(np.full(n, float(seg["hold"])))
        else:
            e0, e1 = seg["ramp"]
            parts.append(e0 + (e1 - e0) * (np.arange(n) + 0.5) / n)
    return np.concatenate(parts) if parts else np.empty(0)


# ------------------------------------------------------------- round trip
@FAST
@given(programs)
def test_json_round_trip(p: Program) -> None:
    text = p.to_json()
    back = Program.from_json(text)
    assert back == p
    assert hash(back) == hash(p)
    assert back.to_json() == text
    # the format of the potentiostat's Waveform property, key for key
    for seg, d in zip(p.segments, json.loads(text), strict=True):
        if isinstance(seg, Hold):
            assert d == {"hold": seg.potential_V, "t": seg.duration_s}
        else:
            assert d == {"ramp": [seg.start_V, seg.end_V], "t": seg.duration_s}


def test_json_format_is_the_waveform_property() -> None:
    text = '[{"hold": 1.0, "t": 0.1}, {"ramp": [0.0, 1.0], "t": 0.5}]'
    p = Program.from_json(text)
    assert p == Program([Hold(1.0, 0.1), Ramp(0.0, 1.0, 0.5)])
    assert p.to_json() == text
    # integers are numbers too; written back as floats
    assert Program.from_json('[{"hold": 1, "t": 2}]').to_json() == '[{"hold": 1.0, "t": 2.0}]'
    # the JSON dicts are accepted where segments are
    assert Program(json.loads(text)) == p == Program.custom(p.segments)


# --------------------------------------------------------------- sampling
@FAST
@given(programs, rates)
def test_sampling_is_the_first_stores_sampling(p: Program, fs: float) -> None:
    np.testing.assert_array_equal(p.sample(fs), legacy_sample(p.to_segments(), fs))


@FAST
@given(programs, rates)
def test_sample_count_is_the_duration_within_one_sample(p: Program, fs: float) -> None:
    e = p.sample(fs)
    seg = p.segment_index(fs)
    counts = p.sample_counts(fs)
    n = p.n_samples(fs)
    assert e.size == seg.size == n == sum(counts)
    assert abs(n - round(p.duration_s * fs)) <= 1
    # at the end of every segment, the samples so far match the time so far
    # (the rounding of one segment is carried into the next, never lost)
    t_end = np.cumsum([s.duration_s for s in p.segments]) * fs
    assert np.all(np.abs(np.cumsum(counts) - t_end) <= 0.5 + 1e-6 * (1 + t_end))
    # segment numbers run in order; each appears as often as it was counted
    assert np.all(np.diff(seg) >= 0)
    np.testing.assert_array_equal(np.bincount(seg, minlength=len(counts)), counts)


@FAST
@given(programs, rates)
def test_potentials_stay_within_the_limits(p: Program, fs: float) -> None:
    lo, hi = p.potential_limits()
    assert lo == min(min(s.start_V, s.end_V) for s in p.segments)
    assert hi == max(max(s.start_V, s.end_V) for s in p.segments)
    e = p.sample(fs)
    tol = 1e-12 * (1 + max(abs(lo), abs(hi)))
    assert np.all(e >= lo - tol) and np.all(e <= hi + tol)
    # each sample lies on its own segment: a hold's potential, or between a
    # ramp's ends
    seg = p.segment_index(fs)
    for k, s in enumerate(p.segments):
        mine = e[seg == k]
        if isinstance(s, Hold):
            assert np.all(mine == s.potential_V)
        elif mine.size:
            a, b = sorted((s.start_V, s.end_V))
            assert np.all((mine >= a - tol) & (mine <= b + tol))
            # and they run the ramp's way
            assert np.all(np.diff(mine) * np.sign(s.end_V - s.start_V) >= 0)


@FAST
@given(programs)
def test_duration_is_the_sum_of_the_segments(p: Program) -> None:
    assert p.duration_s == pytest.approx(math.fsum(s.duration_s for s in p.segments))
    assert p.duration_s > 0


# ------------------------------------------------------------- constructors
@FAST
@given(
    potentials,
    potentials,
    st.integers(min_value=1, max_value=400),
    st.sampled_from([1000.0, 5000.0, 10_000.0]),
    st.integers(min_value=1, max_value=4),
)
def test_cv_is_symmetric(start: float, vertex: float, n_branch: int, fs: float, cycles: int):
    assume(abs(vertex - start) > 1e-3)
    rate = abs(vertex - start) * fs / n_branch  # n_branch samples per sweep
    p = Program.cyclic_voltammetry(start, vertex, rate, cycles)
    assert len(p.segments) == 2 * cycles
    assert p.potential_limits() == (min(start, vertex), max(start, vertex))
    assert p.duration_s == pytest.approx(2 * cycles * abs(vertex - start) / rate)
    # the program is its own time reversal: each return sweep mirrors its outward one
    mirrored = Program([Ramp(s.end_V, s.start_V, s.duration_s) for s in reversed(p.segments)])
    assert mirrored == p
    for out, back in zip(p.segments[::2], p.segments[1::2], strict=True):
        assert (out.start_V, out.end_V) == (back.end_V, back.start_V) == (start, vertex)
        assert out.duration_s == back.duration_s
    # sampled: a palindrome, every branch n_branch samples, every cycle alike
    e = p.sample(fs)
    assert p.sample_counts(fs) == [n_branch] * (2 * cycles)
    tol = 1e-9 * (1 + abs(start) + abs(vertex))
    np.testing.assert_allclose(e, e[::-1], rtol=0, atol=tol)
    per_cycle = e.reshape(cycles, 2 * n_branch)
    np.testing.assert_array_equal(per_cycle, np.broadcast_to(per_cycle[0], per_cycle.shape))
    # each branch is centred on the middle of the sweep
    for branch in e.reshape(2 * cycles, n_branch):
        assert branch.mean() == pytest.approx((start + vertex) / 2, abs=tol)


@FAST
@given(potentials, potentials, st.integers(min_value=2, max_value=50), durations)
def test_staircase_steps(start: float, end: float, steps: int, hold_s: float) -> None:
    p = Program.staircase(start, end, steps, hold_s)
    assert [s.potential_V for s in p.segments] == [float(v) for v in np.linspace(start, end, steps)]
    assert p.segments[0].potential_V == start and p.segments[-1].potential_V == end
    assert all(isinstance(s, Hold) and s.duration_s == hold_s for s in p.segments)
    assert p.duration_s == pytest.approx(steps * hold_s)


def test_ca_lsv_and_pre_hold() -> None:
    assert Program.chronoamperometry(1.0, 0.02) == Program([Hold(1.0, 0.02)])
    lsv = Program.linear_sweep(0.2, -0.8, 2.0)
    assert lsv == Program([Ramp(0.2, -0.8, 0.5)])
    assert lsv.segments[0].rate_V_per_s == pytest.approx(-2.0)
    held = lsv.with_pre_hold(0.1)
    assert held.segments == (Hold(0.2, 0.1), Ramp(0.2, -0.8, 0.5))
    assert lsv.with_pre_hold(0) is lsv
    assert lsv + held == Program([*lsv.segments, *held.segments])


def test_segment_index_browses_a_cv_by_sweep() -> None:
    p = Program.cyclic_voltammetry(0.0, 1.0, 10.0, cycles=3)  # 0.1 s per sweep
    fs = 1000.0
    seg = p.segment_index(fs)
    e = p.sample(fs)
    assert seg.dtype == np.int64 and seg.size == e.size == 600
    rising = seg % 2 == 0
    assert np.all(np.diff(e[rising & (seg == 2)]) > 0)
    assert np.all(np.diff(e[~rising & (seg == 5)]) < 0)
    # a segment shorter than half a sample gets no sample and is skipped
    tiny = Program([Hold(0.0, 0.01), Hold(1.0, 1e-5), Hold(2.0, 0.01)])
    assert set(tiny.segment_index(fs)) == {0, 2}


# --------------------------------------------------------------- refusals
def _named(value: object) -> str:
    return re.escape(repr(value))


@FAST
@given(st.one_of(not_finite, not_numbers))
def test_bad_potentials_are_refused_by_value(v: object) -> None:
    with pytest.raises(ValueError, match=f"potential_V.*{_named(v)}"):
        Hold(v, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"start_V.*{_named(v)}"):
        Ramp(v, 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"end_V.*{_named(v)}"):
        Ramp(0.0, v, 1.0)  # type: ignore[arg-type]


@FAST
@given(st.one_of(not_positive, not_finite, not_numbers))
def test_bad_durations_are_refused_by_value(t: object) -> None:
    with pytest.raises(ValueError, match=f"duration_s.*{_named(t)}"):
        Hold(1.0, t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"duration_s.*{_named(t)}"):
        Ramp(0.0, 1.0, t)  # type: ignore[arg-type]
    # in the JSON form: the segment, the key and the value
    if isinstance(t, float):
        text = json.dumps([{"hold": 1.0, "t": 0.1}, {"hold": 1.0, "t": t}])
        with pytest.raises(ValueError, match=f"segment 1: duration 't'.*{_named(t)}"):
            Program.from_json(text)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[{"hold": 1.0, "t": 0.1}', ["not valid JSON"]),
        ('{"hold": 1.0, "t": 0.1}', ["list of segments", "dict"]),
        ("[]", ["at least one segment"]),
        ('[{"hold": 1.0, "t": 0}]', ["segment 0", "'t'", "got 0"]),
        ('[{"hold": 1.0, "ramp": [0, 1], "t": 1}]', ["exactly one of 'hold' or 'ramp'"]),
        ('[{"t": 1}]', ["exactly one of 'hold' or 'ramp'"]),
        ('[{"ramp": [0.0], "t": 1}]', ["'ramp' takes [start_V, end_V]", "[0.0]"]),
        ('[{"ramp": [0.0, "x"], "t": 1}]', ["segment 0", "end_V", "'x'"]),
        ('[{"hold": 1.0, "t": 0.1, "volts": 2}]', ["unknown key", "'volts'"]),
        ('[{"hold": 1.0, "t": 0.1}, 3]', ["segment 1", "got 3"]),
        ('[{"hold": NaN, "t": 0.1}]', ["potential_V", "nan"]),
        ('[{"hold": 1.0, "t": Infinity}]', ["'t'", "inf"]),
    ],
)
def test_bad_json_says_what_is_wrong(text: str, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as e:
        Program.from_json(text)
    for frag in fragments:
        assert frag in str(e.value), (frag, str(e.value))


def test_bad_constructor_arguments_are_refused_by_value() -> None:
    with pytest.raises(ValueError, match=r"start_V and vertex_V are both 0\.5 V"):
        Program.cyclic_voltammetry(0.5, 0.5, 1.0)
    with pytest.raises(ValueError, match=r"start_V and end_V are both 1 V"):
        Program.linear_sweep(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"scan_rate_V_per_s must be > 0 V/s, got -2"):
        Program.linear_sweep(0.0, 1.0, -2.0)
    with pytest.raises(ValueError, match=r"cycles must be an integer >= 1, got 0"):
        Program.cyclic_voltammetry(0.0, 1.0, 1.0, cycles=0)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 2, got 1"):
        Program.staircase(0.0, 1.0, 1, 0.01)
    with pytest.raises(ValueError, match=r"duration_s must be > 0 s, got 0"):
        Program.staircase(0.0, 1.0, 3, 0)
    with pytest.raises(ValueError, match=r"duration_s must be > 0 s, got -1"):
        Program.chronoamperometry(1.0, -1)
    with pytest.raises(ValueError, match="at least one segment"):
        Program([])
    with pytest.raises(ValueError, match="list of segments"):
        Program("[]")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sample_rate_hz must be > 0 Hz, got 0"):
        Program.chronoamperometry(1.0, 0.1).sample(0)


# -------------------------------------------------------------- the probe
def test_pipette_geometry_defaults_and_ranges() -> None:
    from pydantic import ValidationError

    g = PipetteGeometry()
    assert (g.tip_radius_nm, g.half_angle_deg, g.electrolyte_S_per_cm, g.footprint_radius_nm) == (
        50.0,
        5.0,
        1e-2,
        75.0,
    )
    for field, bad in [
        ("tip_radius_nm", 0.0),
        ("tip_radius_nm", math.nan),
        ("half_angle_deg", 90.0),
        ("electrolyte_S_per_cm", -1e-2),
        ("footprint_radius_nm", math.inf),
    ]:
        with pytest.raises(ValidationError) as e:
            PipetteGeometry(**{field: bad})
        assert field in str(e.value) and repr(bad) in str(e.value)
    with pytest.raises(ValidationError, match="tip_radius_um"):
        PipetteGeometry(tip_radius_um=0.05)  # a unit in the name: typos are not ignored
    p = ProbeSpec()
    assert (p.name, p.z_stage, p.potentiostat, p.pipette) == ("A", "", "Potentiostat", g)
    assert ProbeSpec.model_validate_json(p.model_dump_json()) == p


# ----------------------------------------------------------- the layering
def test_model_and_simulator_import_nothing_above_them() -> None:
    """The model pulls in neither numpy (until a program is sampled) nor
    pydantic (until a probe is used); the simulator runs a Program without
    pydantic, Micro-Manager or Qt; ``Waveform`` there is the Program."""
    code = textwrap.dedent(
        """
        import sys
        import napari_seccm.model as m
        p = m.Program.from_json('[{"hold": 0.5, "t": 0.01}]')
        print("MODEL", sorted(k for k in ("numpy", "pydantic", "zarr") if k in sys.modules))
        from napari_seccm.simulation import SimulatedRig, Waveform
        assert Waveform is m.Program
        w = Waveform.from_json(p.to_json())
        assert (w.duration_s, w.potential_limits()) == (0.01, (0.5, 0.5))
        print("TRACE", SimulatedRig().acquire(w).shape)
        bad = sorted(k for k in sys.modules if k.split(".")[0] in (
            "pydantic", "pymmcore_plus", "pymmcore", "qtpy", "PyQt6", "napari", "zarr"))
        print("BAD", bad)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MODEL []" in r.stdout, r.stdout
    assert "TRACE (3, 50)" in r.stdout, r.stdout
    assert "BAD []" in r.stdout, r.stdout
