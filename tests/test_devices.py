"""Device contract of the SECCM Python devices, exercised through UniMMCore.

Everything goes through the real pymmcore-plus core loaded from
``micromanager_config/seccm_simulated.cfg``: properties, limits, errors, core
events, the simulated clock, the device-side approach and the camera.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from pymmcore_plus import PropertyType

from napari_seccm.devices.simulated import FAULTS

FLOAT, INT, STR = PropertyType.Float, PropertyType.Integer, PropertyType.String

# (device, property, type, limits or allowed values or None, read-only)

DOCUMENTED = [
    ("PiezoXY", "Speed_um_per_s", FLOAT, (0.1, 1000.0), False),
    ("PiezoZ", "Speed_um_per_s", FLOAT, (0.01, 500.0), False),
    ("PiezoZ", "Approach_Speed_um_per_s", FLOAT, (0.001, 100.0), False),
    ("PiezoZ", "Approach_StopZ_um", FLOAT, (-1000.0, 1000.0), False),
    ("PiezoZ", "Approach_Threshold_A", FLOAT, (-1e-6, 1e-6), False),
    ("PiezoZ", "Approach_Detection", STR, ("absolute", "rise", "either"), False),
    ("PiezoZ", "Approach_ConfirmSamples", INT, (0, 1000), False),
    ("PiezoZ", "Approach", STR, ("Idle", "Start", "Stop", "AcceptContact"), False),
    ("PiezoZ", "Approach_Result", STR, None, True),
    ("PiezoZ", "Approach_ContactZ_um", FLOAT, None, True),
    ("Potentiostat", "Cell", STR, ("Off", "On"), False),
    ("Potentiostat", "Potential_V", FLOAT, (-5.0, 5.0), False),
    ("Potentiostat", "Current_A", FLOAT, None, True),
    ("Potentiostat", "CurrentRange_A", FLOAT, (1e-12, 1e-3), False),
    ("Potentiostat", "CurrentRanges_A", STR, None, True),
    ("Potentiostat", "Filter_Hz", FLOAT, (1.0, 50_000.0), False),
    ("Potentiostat", "SampleRate_Hz", FLOAT, (100.0, 100_000.0), False),
    ("Potentiostat", "NoiseRMS_A", FLOAT, None, True),
    ("Potentiostat", "Waveform", STR, None, False),
    ("Potentiostat", "Acquire", STR, ("Idle", "Run", "Abort"), False),
    ("Potentiostat", "LastTrace_Samples", INT, None, True),
    ("OpticalCamera", "PixelSize_um", FLOAT, (0.001, 100.0), False),
    ("SECCM", "TimeScale", FLOAT, (0.0, 1.0), False),
    ("SECCM", "InstrumentTime_s", FLOAT, None, True),
    ("SECCM", "Pipette_State", STR, ("ok", "clogged", "broken"), False),
    ("SECCM", "SurfaceHeight_um", FLOAT, None, True),
    ("SECCM", "InjectFailure", STR, FAULTS, False),
    ("SECCM", "EmergencyStop", STR, ("Clear", "Latched"), False),
    ("SECCM", "Interlock", STR, ("On", "Off"), False),
    ("SECCM", "Interlock_Margin_um", FLOAT, (0.0, 100.0), False),
    ("PiezoZ", "Interlock_MinZ_um", FLOAT, None, True),
    ("PiezoZ", "Interlock_LateralMinZ_um", FLOAT, None, True),
    ("PiezoZ", "ProbeHealth", STR, None, True),
    ("PiezoXY", "LastError", STR, None, True),
    ("PiezoZ", "LastError", STR, None, True),
    ("Potentiostat", "LastError", STR, None, True),
    ("SECCM", "MainsPickup_A", FLOAT, (0.0, 1e-6), False),
]

# pre-init properties and the value the shipped config gives them
PREINIT = [
    ("PiezoXY", "XMin_um", FLOAT, -50.0),
    ("PiezoXY", "XMax_um", FLOAT, 50.0),
    ("PiezoXY", "YMin_um", FLOAT, -50.0),
    ("PiezoXY", "YMax_um", FLOAT, 50.0),
    ("PiezoZ", "ZMin_um", FLOAT, 0.0),
    ("PiezoZ", "ZMax_um", FLOAT, 100.0),
    ("OpticalCamera", "SensorWidth_px", INT, 512),
    ("OpticalCamera", "SensorHeight_px", INT, 512),
    ("SECCM", "Seed", INT, 0),
    ("PiezoZ", "Probe", STR, "A"),
    ("Potentiostat", "Channel", STR, "A"),
]

NATIVE = {FLOAT: float, INT: int, STR: str}


def sim_time(core) -> float:
    return core.getProperty("SECCM", "InstrumentTime_s")


def hold_current(core, volts: float = 1.0, t_s: float = 0.02) -> np.ndarray:
    """Current samples of a hold at ``volts`` (last three quarters: filter settled)."""
    core.setProperty("Potentiostat", "Waveform", f'[{{"hold": {volts}, "t": {t_s}}}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForSystem()
    i = core.getProperty("Potentiostat", "LastTrace")[2]
    return i[i.size // 4 :]


def assert_rejected(excinfo, *fragments: str) -> None:
    msg = str(excinfo.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in error message {msg!r}"


# ---------------------------------------------------------------- properties
def _property_problems(core, dev, prop, ptype, spec, ro) -> list[str]:
    if not core.hasProperty(dev, prop):
        return [f"{dev}.{prop} is missing"]
    bad = []
    got_type = core.getPropertyType(dev, prop)
    if got_type != ptype:
        bad.append(f"{dev}.{prop} type {got_type!r} != {ptype!r}")
    if core.isPropertyReadOnly(dev, prop) is not ro:
        bad.append(f"{dev}.{prop} read-only is not {ro}")
    value = core.getProperty(dev, prop)
    if not isinstance(value, NATIVE[ptype]):
        bad.append(f"{dev}.{prop} value {value!r} is not {NATIVE[ptype].__name__}")
    if isinstance(spec, tuple) and isinstance(spec[0], str):
        allowed = tuple(core.getAllowedPropertyValues(dev, prop))
        if allowed != spec:
            bad.append(f"{dev}.{prop} allowed values {allowed}")
        if value not in spec:
            bad.append(f"{dev}.{prop} value {value!r} not allowed")
    elif spec is not None:
        lo, hi = spec
        limits = (
            core.getPropertyLowerLimit(dev, prop),
            core.getPropertyUpperLimit(dev, prop),
        )
        if not core.hasPropertyLimits(dev, prop) or limits != pytest.approx(spec):
            bad.append(f"{dev}.{prop} limits {limits} != {spec}")
        if not lo <= value <= hi:
            bad.append(f"{dev}.{prop} value {value!r} outside {spec}")
    elif core.hasPropertyLimits(dev, prop):
        bad.append(f"{dev}.{prop} has unexpected limits")
    return bad


def test_documented_properties(core):
    bad = [p for row in DOCUMENTED for p in _property_problems(core, *row)]
    assert bad == []


def test_preinit_properties(core):
    bad = []
    for dev, prop, ptype, value in PREINIT:
        if not (core.hasProperty(dev, prop) and core.isPropertyPreInit(dev, prop)):
            bad.append(f"{dev}.{prop} is not a pre-init property")
            continue
        if core.getPropertyType(dev, prop) != ptype:
            bad.append(f"{dev}.{prop} type {core.getPropertyType(dev, prop)!r}")
        # UniMMCore coerces a config's pre-init text to a number only when the
        # property has limits: compare the value, whatever its Python type
        raw = core.getProperty(dev, prop)
        got = raw if ptype == STR else NATIVE[ptype](float(raw))
        if got != value:
            bad.append(f"{dev}.{prop} = {got!r}, expected {value!r}")
    assert bad == []


def test_sample_property_tables(core):
    """Every film and pipette parameter of the documented tables is a property."""
    from napari_seccm.devices.simulated import FILM_PROPERTIES, PIPETTE_PROPERTIES

    table = {**FILM_PROPERTIES, **PIPETTE_PROPERTIES}
    assert len(table) == 50
    for name, (_field, spec, desc) in table.items():
        assert core.hasProperty("SECCM", name), name
        assert desc
        value = core.getProperty("SECCM", name)
        if spec is None:
            assert core.getPropertyType("SECCM", name) == STR
            assert isinstance(value, str)
            continue
        assert core.getPropertyType("SECCM", name) in (FLOAT, INT), name
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        assert core.getPropertyLowerLimit("SECCM", name) == spec[0]
        assert core.getPropertyUpperLimit("SECCM", name) == spec[1]
        assert spec[0] <= value <= spec[1]


def test_traces_are_arrays(core):
    for dev, prop in (("PiezoZ", "Approach_Trace"), ("Potentiostat", "LastTrace")):
        assert core.isPropertyReadOnly(dev, prop)
        tr = core.getProperty(dev, prop)
        assert isinstance(tr, np.ndarray) and tr.shape == (3, 0)
    core.setProperty("Potentiostat", "Waveform", '[{"hold": 0.5, "t": 0.01}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForSystem()
    tr = core.getProperty("Potentiostat", "LastTrace")
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    assert tr.shape == (3, round(0.01 * fs))
    assert core.getProperty("Potentiostat", "LastTrace_Samples") == tr.shape[1]
    assert np.allclose(np.diff(tr[0]), 1 / fs, rtol=1e-9)


# --------------------------------------------------------------- bad values
def test_xy_beyond_travel(core):
    core.setXYPosition(1.5, -2.0)
    core.waitForSystem()
    moves = []
    core.events.XYStagePositionChanged.connect(lambda *a: moves.append(a))
    t0 = sim_time(core)
    for xy, frags in (((60.0, 0.0), ("60", "50")), ((0.0, -75.5), ("-75.5", "-50"))):
        with pytest.raises(ValueError, match="outside") as e:
            core.setXYPosition(*xy)
            core.waitForSystem()
        assert_rejected(e, *frags)
        assert core.getXYPosition() == pytest.approx((1.5, -2.0), abs=1e-12)
    assert moves == []
    assert sim_time(core) == t0


def test_z_beyond_travel(core):
    z0 = core.getPosition()
    moves = []
    core.events.stagePositionChanged.connect(lambda *a: moves.append(a))
    for z, frags in ((150.0, ("150", "100")), (-1.25, ("-1.25", "0"))):
        with pytest.raises(ValueError, match="outside") as e:
            core.setPosition(z)
            core.waitForSystem()
        assert_rejected(e, *frags)
        assert core.getPosition() == z0
    assert moves == []


def test_potential_beyond_compliance(core):
    core.setProperty("Potentiostat", "Potential_V", 0.75)
    for v, frags in ((-6.25, ("-6.25", "-5")), (7.5, ("7.5", "5.0"))):
        with pytest.raises(ValueError) as e:
            core.setProperty("Potentiostat", "Potential_V", v)
        assert_rejected(e, *frags)
        assert core.getProperty("Potentiostat", "Potential_V") == 0.75


def test_filter_above_nyquist(core):
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    fc = core.getProperty("Potentiostat", "Filter_Hz")
    noise = core.getProperty("Potentiostat", "NoiseRMS_A")
    bad = 0.5 * fs + 500.0
    with pytest.raises(ValueError) as e:
        core.setProperty("Potentiostat", "Filter_Hz", bad)
    assert_rejected(e, f"{bad:g}", f"{0.5 * fs:g}")
    assert core.getProperty("Potentiostat", "Filter_Hz") == fc
    assert core.getProperty("Potentiostat", "NoiseRMS_A") == noise
    # the other way round: a sample rate below twice the filter
    with pytest.raises(ValueError) as e:
        core.setProperty("Potentiostat", "SampleRate_Hz", 1.5 * fc)
    assert_rejected(e, f"{1.5 * fc:g}", f"{2 * fc:g}")
    assert core.getProperty("Potentiostat", "SampleRate_Hz") == fs


def test_unknown_current_range(core):
    core.setProperty("Potentiostat", "CurrentRange_A", 1e-9)
    with pytest.raises(ValueError) as e:
        core.setProperty("Potentiostat", "CurrentRange_A", 3e-9)
    assert_rejected(e, "3e-09", "1e-10", "1e-06")
    assert core.getProperty("Potentiostat", "CurrentRange_A") == 1e-9


def test_waveform_rejected(core):
    good = '[{"hold": 0.25, "t": 0.05}]'
    core.setProperty("Potentiostat", "Waveform", good)
    kept = core.getProperty("Potentiostat", "Waveform")
    cases = [
        ('[{"hold": 1.0, "t": 0.1}', ("JSON",)),  # malformed
        ('{"hold": 1.0, "t": 0.1}', ("list",)),  # not a list
        ('[{"ramp": [0.0, 6.5], "t": 0.1}]', ("6.5", "5")),  # beyond compliance
        ('[{"hold": -5.5, "t": 0.1}]', ("-5.5", "-5")),
        ('[{"hold": 1.0, "t": 0}]', ("'t'", "0")),  # zero duration
        ('[{"hold": 1.0, "ramp": [0, 1], "t": 1}]', ("hold", "ramp")),
    ]
    for text, frags in cases:
        with pytest.raises(ValueError) as e:
            core.setProperty("Potentiostat", "Waveform", text)
        assert_rejected(e, *frags)
        assert core.getProperty("Potentiostat", "Waveform") == kept
    # the kept waveform is the one that runs
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForSystem()
    tr = core.getProperty("Potentiostat", "LastTrace")
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    assert tr.shape[1] == round(0.05 * fs)


def test_sample_property_limits(core):
    with pytest.raises(ValueError) as e:
        core.setProperty("SECCM", "Anisotropy", 0.5)
    assert_rejected(e, "0.5", "1.0")
    assert core.getProperty("SECCM", "Anisotropy") == 10.0
    with pytest.raises(ValueError):
        core.setProperty("SECCM", "InstrumentTime_s", 3.0)  # read-only


# -------------------------------------------------------- events and moves
def test_xy_event_and_round_trip(core):
    got = []
    core.events.XYStagePositionChanged.connect(lambda *a: got.append(a))
    targets = [(3.25, -7.5), (-49.0, 50.0), (0.0, 0.0), (12.125, 33.3)]
    for x, y in targets:
        core.setXYPosition(x, y)
        core.waitForSystem()
        assert core.getXYPosition() == pytest.approx((x, y), abs=1e-12)
        assert core.getXPosition() == pytest.approx(x, abs=1e-12)
        assert core.getYPosition() == pytest.approx(y, abs=1e-12)
    assert got == [("PiezoXY", x, y) for x, y in targets]


def test_z_event_and_round_trip(core):
    got = []
    core.events.stagePositionChanged.connect(lambda *a: got.append(a))
    targets = [70.0, 45.5, 99.999]
    for z in targets:
        core.setPosition(z)
        core.waitForSystem()
        assert core.getPosition() == pytest.approx(z, abs=1e-12)
    assert got == [("PiezoZ", z) for z in targets]


def test_approach_emits_final_z(landed_core):
    core = landed_core
    got = []
    core.events.stagePositionChanged.connect(lambda *a: got.append(a))
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    core.setPosition(surface + 2.0)
    core.waitForSystem()
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface - 0.02)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    assert core.getProperty("PiezoZ", "Approach_Result") == "contact"
    assert got[0] == ("PiezoZ", surface + 2.0)
    assert got[-1] == ("PiezoZ", core.getPosition())
    assert len(got) == 2


# ------------------------------------------------------------------- clock
def test_clock_xy_moves(core):
    speed = 12.5
    core.setProperty("PiezoXY", "Speed_um_per_s", speed)
    pos = core.getXYPosition()
    for x, y in [(3.0, 4.0), (3.0, -8.0), (-20.0, 11.0), (-20.0, 11.0)]:
        t0 = sim_time(core)
        core.setXYPosition(x, y)
        core.waitForSystem()
        dt = sim_time(core) - t0
        expected = math.hypot(x - pos[0], y - pos[1]) / speed
        assert dt == pytest.approx(expected, rel=1e-9, abs=1e-12)
        pos = (x, y)


def test_clock_z_moves(core):
    speed = 7.0
    core.setProperty("PiezoZ", "Speed_um_per_s", speed)
    z = core.getPosition()
    for target in (z + 14.0, z - 3.5, z - 3.5, 95.0):
        t0 = sim_time(core)
        core.setPosition(target)
        core.waitForSystem()
        assert sim_time(core) - t0 == pytest.approx(abs(target - z) / speed, rel=1e-9, abs=1e-12)
        z = target


# ---------------------------------------------------------------- approach
def ideal(core) -> None:
    """The idealized film and droplet (no landing scatter, drift, mains or 1/f):
    for tests of exact device behaviour at a single landing."""
    from napari_seccm.devices.simulated import IDEAL_PROPERTIES

    for name, value in IDEAL_PROPERTIES.items():
        core.setProperty("SECCM", name, value)


def test_approach_cell_off_never_contacts_and_crashes(core):
    ideal(core)  # the trace is Johnson noise alone
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    crash = core.getProperty("SECCM", "Pipette_CrashDepth_um")
    speed = core.getProperty("PiezoZ", "Approach_Speed_um_per_s")
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    core.setPosition(surface + 1.0)
    core.waitForSystem()
    stop = surface - 10 * crash
    core.setProperty("PiezoZ", "Approach_StopZ_um", stop)
    t0 = sim_time(core)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    assert core.getProperty("PiezoZ", "Approach_Result") == "no contact"
    assert math.isnan(core.getProperty("PiezoZ", "Approach_ContactZ_um"))
    assert core.getPosition() == pytest.approx(stop, abs=1e-12)
    assert core.getProperty("SECCM", "Pipette_State") == "broken"
    # it drove all the way down at the approach speed (at most 2 samples more)
    travel_s = (surface + 1.0 - stop) / speed
    assert travel_s <= sim_time(core) - t0 <= travel_s + 2 / fs
    # the amplifier sampled the whole descent and saw nothing but noise
    trace = core.getProperty("PiezoZ", "Approach_Trace")
    assert trace[1, 0] == pytest.approx(surface + 1.0)
    assert trace[1, -1] <= stop + speed / fs
    noise = core.getProperty("Potentiostat", "NoiseRMS_A")
    assert np.abs(trace[2]).max() < 10 * noise
    assert np.abs(trace[2]).max() < core.getProperty("PiezoZ", "Approach_Threshold_A")


def test_approach_cell_off_above_crash_depth_keeps_pipette(core):
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    crash = core.getProperty("SECCM", "Pipette_CrashDepth_um")
    core.setPosition(surface + 1.0)
    core.waitForSystem()
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface - crash / 2)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    assert core.getProperty("PiezoZ", "Approach_Result") == "no contact"
    assert core.getProperty("SECCM", "Pipette_State") == "ok"


@pytest.mark.parametrize(("speed", "confirm"), [(1.0, 3), (0.5, 10), (2.0, 0)])
def test_approach_stops_near_contact_height(core, lander, speed, confirm):
    ideal(core)  # the meniscus lands at its height, on a surface that does not drift
    core.setProperty("PiezoZ", "Approach_ConfirmSamples", confirm)
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    core.setPosition(surface + 1.0)
    core.waitForSystem()
    t0 = sim_time(core)
    res = lander(core, speed_um_s=speed)
    approach_s = sim_time(core) - t0
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    # the stage moved at constant speed for exactly the time the clock shows
    assert (res["start_z_um"] - res["final_z_um"]) / speed == pytest.approx(approach_s, rel=1e-9)
    z_contact = res["surface_um"] + core.getProperty("SECCM", "Pipette_MeniscusHeight_um")
    overshoot = speed * (confirm + 1) / fs
    assert z_contact - overshoot - 1e-9 <= res["final_z_um"] <= z_contact + 1e-9
    # the detected height lies within one sample's travel above the true one
    assert z_contact - 1e-9 <= res["contact_z_um"] <= z_contact + speed / fs + 1e-9
    assert core.getProperty("SECCM", "Pipette_State") == "ok"


@pytest.mark.parametrize("landing_sample", [32_760.5, 32_766.5, 32_767.5, 32_770.5])
def test_long_approach_stops_near_contact_height(core, lander, landing_sample):
    """Long approaches too: the landing falls near sample 2^15, where the
    simulated controller starts a new block of samples."""
    ideal(core)
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    speed = core.getProperty("PiezoZ", "Approach_Speed_um_per_s")
    confirm = core.getProperty("PiezoZ", "Approach_ConfirmSamples")
    meniscus = core.getProperty("SECCM", "Pipette_MeniscusHeight_um")
    res = lander(core, start_gap_um=meniscus + landing_sample / fs * speed)
    z_contact = res["surface_um"] + meniscus
    overshoot = speed * (confirm + 1) / fs
    assert z_contact - overshoot - 1e-9 <= res["final_z_um"] <= z_contact + 1e-9
    assert z_contact - 1e-9 <= res["contact_z_um"] <= z_contact + speed / fs + 1e-9


def test_approach_stop_must_be_below(core):
    z = core.getPosition()
    core.setProperty("PiezoZ", "Approach_StopZ_um", z + 1.0)
    with pytest.raises(ValueError) as e:
        core.setProperty("PiezoZ", "Approach", "Start")
        core.waitForSystem()
    assert_rejected(e, f"{z + 1.0:g}", f"{z:g}")
    assert core.getPosition() == z
    assert core.getProperty("PiezoZ", "Approach_Result") == "idle"


def test_retract_hysteresis(core, lander):
    ideal(core)  # landings alike, no 1/f: the currents compare to 1 %
    lander(core)
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    meniscus = core.getProperty("SECCM", "Pipette_MeniscusHeight_um")
    detach = core.getProperty("SECCM", "Pipette_DetachHeight_um")
    noise = core.getProperty("Potentiostat", "NoiseRMS_A")
    assert meniscus < detach
    i_landed = hold_current(core).mean()
    assert i_landed > 1000 * noise
    # lifting less than the detach height keeps the meniscus
    core.setPosition(surface + detach - 0.05)
    core.waitForSystem()
    i_kept = hold_current(core)
    assert i_kept.mean() == pytest.approx(i_landed, rel=1e-2)
    # lifting above it ends the contact: only noise is left
    core.setPosition(surface + detach + 0.05)
    core.waitForSystem()
    i_off = hold_current(core)
    assert abs(i_off.mean()) < 1e-3 * i_landed
    assert i_off.std() < 3 * noise
    # going back down, but not below the meniscus height, does not land again
    # (a plain move below the last contact: the interlock must be lifted first)
    with pytest.raises(ValueError, match="below the last contact height"):
        core.setPosition(surface + 0.5 * meniscus)
    core.setProperty("SECCM", "Interlock", "Off")
    core.setPosition(surface + 0.5 * (meniscus + detach))
    core.waitForSystem()
    assert abs(hold_current(core).mean()) < 1e-3 * i_landed
    core.setPosition(surface + 0.5 * meniscus)
    core.waitForSystem()
    assert hold_current(core).mean() == pytest.approx(i_landed, rel=1e-2)


# ------------------------------------------------------------------ sample
def test_height_offset_moves_surface(core):
    s0 = core.getProperty("SECCM", "SurfaceHeight_um")
    core.setProperty("SECCM", "HeightOffset_um", 25.0)
    assert core.getProperty("SECCM", "SurfaceHeight_um") == pytest.approx(s0 + 5.0, abs=1e-9)


def test_stripe_period_takes_effect(core, lander):
    ideal(core)  # no 1/f: the same landing reads the same current to 1e-3
    # stripes along x, [001] for y mod period in [0, period / 2)
    for prop, val in (
        ("PadCapacitance_F", 1.0),  # a back contact too large to charge: no drift
        ("StripeAngle_deg", 0.0),
        ("StripeJitter_um", 0.0),
        ("StripeOffset_um", 0.0),
        ("StripeFraction001", 0.5),
        ("StripePeriod_um", 10.0),
    ):
        core.setProperty("SECCM", prop, val)
    core.setXYPosition(0.0, 2.5)  # phase 0.25: a [001] stripe
    lander(core)
    i_001 = hold_current(core).mean()
    core.setProperty("SECCM", "StripePeriod_um", 4.0)  # phase 0.625: [100]
    assert core.getProperty("SECCM", "StripePeriod_um") == 4.0
    i_100 = hold_current(core).mean()
    assert i_100 > 1.05 * i_001  # [100] conducts better (DOMAIN.md)
    core.setProperty("SECCM", "StripePeriod_um", 10.0)
    assert hold_current(core).mean() == pytest.approx(i_001, rel=1e-3)


# ------------------------------------------------------------------ camera
def test_camera_snap(make_core):
    core = make_core(
        preinit=[
            "OpticalCamera,SensorWidth_px,320",
            "OpticalCamera,SensorHeight_px,200",
        ]
    )
    assert core.getImageWidth() == 320
    assert core.getImageHeight() == 200
    core.setExposure(25.0)
    t0 = sim_time(core)
    core.snapImage()
    img = core.getImage()
    assert sim_time(core) - t0 == pytest.approx(0.025, rel=1e-9)
    assert img.dtype == np.uint16
    assert img.shape == (200, 320)
    assert img.max() <= 4095  # 12-bit camera
    assert img.std() > 0


# ---------------------------------------------------------------- failures
def test_inject_failure_xy(core):
    core.setXYPosition(2.0, 3.0)
    core.waitForSystem()
    core.setProperty("SECCM", "InjectFailure", "xy")
    assert core.getProperty("SECCM", "InjectFailure") == "xy"
    t0 = sim_time(core)
    # moves are asynchronous: the failure is reported by the device, not raised
    core.setXYPosition(5.0, 5.0)
    core.waitForSystem()
    assert "xy failure" in core.getProperty("PiezoXY", "LastError")
    assert core.getXYPosition() == pytest.approx((2.0, 3.0))
    assert sim_time(core) == t0
    core.setProperty("SECCM", "InjectFailure", "none")
    core.setXYPosition(5.0, 5.0)
    core.waitForSystem()
    assert core.getXYPosition() == pytest.approx((5.0, 5.0))


def test_inject_failure_z_and_potentiostat(core):
    z0 = core.getPosition()
    core.setProperty("SECCM", "InjectFailure", "z")
    core.setPosition(z0 - 1.0)
    core.waitForSystem()
    assert "z failure" in core.getProperty("PiezoZ", "LastError")
    assert core.getPosition() == z0
    core.setProperty("SECCM", "InjectFailure", "potentiostat")
    # the amplifier refuses settings at once; a waveform reports its failure
    with pytest.raises(RuntimeError, match="potentiostat"):
        core.setProperty("Potentiostat", "Acquire", "Run")
    assert core.getProperty("Potentiostat", "LastTrace_Samples") == 0


# ------------------------------------------------------------------- speed
def test_core_overhead(core, capsys):
    """Measure (not assert) the cost of getProperty and setXYPosition via the core."""
    n = 5000
    t = time.perf_counter()
    for _ in range(n):
        core.getProperty("Potentiostat", "Potential_V")
    get_us = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for k in range(n):
        core.setXYPosition(0.01 * (k % 100), 0.0)
        core.waitForSystem()
    set_us = (time.perf_counter() - t) / n * 1e6
    assert core.getXYPosition() == pytest.approx((0.99, 0.0))
    with capsys.disabled():
        print(
            f"\n[timing] getProperty {get_us:.1f} us, setXYPosition {set_us:.1f} us"
            " per call through UniMMCore"
        )


# ------------------------------------------------ refused values change nothing
def test_pre_init_properties_cannot_change_after_initialization(core):
    """The travel is read at initialization; a later edit would be shown but
    not enforced, so it is refused by name."""
    for dev, prop in (("PiezoZ", "ZMin_um"), ("PiezoXY", "XMax_um"), ("Potentiostat", "Channel")):
        before = core.getProperty(dev, prop)
        with pytest.raises(ValueError, match=f"{prop} is a pre-initialization property"):
            core.setProperty(dev, prop, "30")
        assert core.getProperty(dev, prop) == before
    with pytest.raises(ValueError, match="outside"):
        core.setPosition(float(core.getProperty("PiezoZ", "ZMin_um")) - 1.0)
        core.waitForSystem()


def test_approach_settings_that_would_fire_at_once_are_refused(core):
    before = core.getProperty("PiezoZ", "Approach_Threshold_A")
    for bad in (0.0, -1e-12):
        with pytest.raises(ValueError, match=r"Approach_Threshold_A must be above 0 A"):
            core.setProperty("PiezoZ", "Approach_Threshold_A", bad)
    assert core.getProperty("PiezoZ", "Approach_Threshold_A") == before
    with pytest.raises(ValueError, match=r"whole number, got 2\.5"):
        core.setProperty("PiezoZ", "Approach_ConfirmSamples", 2.5)
    assert core.getProperty("PiezoZ", "Approach_ConfirmSamples") == 3
    core.setProperty("PiezoZ", "Approach_ConfirmSamples", 4)
    assert core.getProperty("PiezoZ", "Approach_ConfirmSamples") == 4


def test_the_sample_cap_holds_whichever_is_set_last(core):
    """Rate then waveform, or waveform then rate: never more than 1e7 samples."""
    core.setProperty("Potentiostat", "SampleRate_Hz", 10_000.0)
    core.setProperty("Potentiostat", "Waveform", '[{"hold": 0.5, "t": 500}]')  # 5e6 samples
    with pytest.raises(ValueError, match=r"5e\+06 Hz|2\.5e\+07 samples"):
        core.setProperty("Potentiostat", "SampleRate_Hz", 50_000.0)
    assert core.getProperty("Potentiostat", "SampleRate_Hz") == 10_000.0


def test_a_setting_the_amplifier_refuses_is_not_kept(core):
    before = core.getProperty("Potentiostat", "CurrentRange_A")
    core.setProperty("SECCM", "InjectFailure", "potentiostat")
    try:
        with pytest.raises(Exception, match="simulated potentiostat failure"):
            core.setProperty("Potentiostat", "CurrentRange_A", 1e-9)
    finally:
        core.setProperty("SECCM", "InjectFailure", "none")
    assert core.getProperty("Potentiostat", "CurrentRange_A") == before
