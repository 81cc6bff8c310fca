"""The PI piezo controller hub through the real core, against a fake E-727
that speaks GCS 2 to the unmodified ``pipython`` client over TCP and over a
pseudo-terminal (``napari_seccm.fakes.gcs``), with the simulated cell behind it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_seccm.acquisition.control import emergency_stop, reset_emergency_stop
from napari_seccm.configs import load_core
from napari_seccm.devices._approach import software_approach
from napari_seccm.fakes.gcs import FakeGCS
from napari_seccm.fakes.world import FakeWorld

pytest.importorskip("pipython")  # the [pi] extra; installed with the test extra


def idle(core, dev: str, timeout_s: float) -> None:
    """Wait until ``dev`` is idle (its LastError is the test's to read)."""
    t_end = time.monotonic() + timeout_s
    while core.deviceBusy(dev):
        assert time.monotonic() < t_end, f"{dev} still busy after {timeout_s} s"
        time.sleep(0.001)


def pi_config(tmp_path: Path, *, tcp=None, pty=None, extra: str = "") -> Path:
    if tcp is not None:
        conn = f"#py Property,PI,Connection,TCP\n#py Property,PI,Host,{tcp[0]}\n#py Property,PI,TCPPort,{tcp[1]}\n"
    else:
        conn = f"#py Property,PI,Connection,Serial\n#py Property,PI,SerialPort,{pty}\n"
    text = f"""# a PI E-727 (X, Y, Z) as one hub
Property,Core,Initialize,0
#py pyDevice,PI,napari_seccm.devices,PIHub
#py pyDevice,PiezoXY,napari_seccm.devices,PiezoXY
#py pyDevice,PiezoZ,napari_seccm.devices,PiezoZ
#py Parent,PiezoXY,PI
#py Parent,PiezoZ,PI
{conn}#py Property,PI,Timeout_ms,500
{extra}#py Property,PiezoXY,XMin_um,-50.0
#py Property,PiezoXY,XMax_um,50.0
#py Property,PiezoXY,YMin_um,-50.0
#py Property,PiezoXY,YMax_um,50.0
#py Property,PiezoZ,ZMin_um,-10.0
#py Property,PiezoZ,ZMax_um,100.0
Property,Core,Initialize,1
#py Property,Core,XYStage,PiezoXY
#py Property,Core,Focus,PiezoZ
"""
    p = tmp_path / "pi.cfg"
    p.write_text(text)
    return p


@pytest.fixture
def world():
    return FakeWorld()


@pytest.fixture
def fake(world):
    f = FakeGCS(world, velocity_um_s=500.0)
    f.serve_tcp()
    yield f
    f.close()


@pytest.fixture
def core(fake, tmp_path):
    c = load_core(pi_config(tmp_path, tcp=fake.address), signals="psygnal")
    yield c
    c.unloadAllDevices()


def test_the_hub_reads_the_controller_and_narrows_the_travel(core, fake) -> None:
    assert core.getProperty("PI", "Model") == "E-727"
    assert fake.world.axes["Z"].servo and fake.world.axes["X"].servo  # servo on at start
    # the controller's Z travel is 0..100 um: the stage's -10 is narrowed to 0
    with pytest.raises(ValueError, match="-5"):
        core.setPosition("PiezoZ", -5.0)
    assert core.getPosition("PiezoZ") == pytest.approx(60.0)


def test_moves_start_report_busy_and_end_on_target(core, fake) -> None:
    core.setProperty("PiezoXY", "Speed_um_per_s", 200.0)
    t0 = time.perf_counter()
    core.setXYPosition(10.0, -4.0)
    returned = time.perf_counter() - t0
    assert core.deviceBusy("PiezoXY")
    idle(core, "PiezoXY", 5.0)
    took = time.perf_counter() - t0
    x, y = core.getXYPosition()
    assert (x, y) == (pytest.approx(10.0, abs=1e-4), pytest.approx(-4.0, abs=1e-4))
    # 10.8 um at 200 um/s: 54 ms of motion, and the call returned before it
    assert returned < took and took >= 0.05
    assert core.getProperty("PiezoXY", "LastError") == ""
    # the XY velocities were split so that both axes arrive together
    vel = [line for line in fake.log if line.startswith("VEL 1")]
    assert vel and "2" in vel[-1]
    core.setProperty("PiezoZ", "Speed_um_per_s", 100.0)
    core.setPosition("PiezoZ", 40.0)
    idle(core, "PiezoZ", 5.0)
    assert core.getPosition("PiezoZ") == pytest.approx(40.0, abs=1e-4)


def test_core_stop_halts_a_move(core, fake) -> None:
    core.setProperty("PiezoZ", "Speed_um_per_s", 20.0)
    core.setPosition("PiezoZ", 90.0)  # 30 um at 20 um/s: 1.5 s
    time.sleep(0.1)
    t0 = time.perf_counter()
    core.stop("PiezoZ")
    idle(core, "PiezoZ", 2.0)
    assert time.perf_counter() - t0 < 0.5
    z = core.getPosition("PiezoZ")
    assert 60.5 < z < 80.0
    assert "stopped before its end" in core.getProperty("PiezoZ", "LastError")
    assert any(line.startswith("HLT") for line in fake.log)
    # the controller really stopped there
    time.sleep(0.1)
    assert fake.world.position("Z") == pytest.approx(z, abs=0.05)


def test_controller_errors_become_clear_messages(core, fake) -> None:
    fake.inject_error(5, "MOV")  # e.g. the servo switched off by an overload
    core.setPosition("PiezoZ", 50.0)
    idle(core, "PiezoZ", 5.0)
    err = core.getProperty("PiezoZ", "LastError")
    assert "E-727" in err and "GCS error 5" in err and "MOV" in err, err
    # the next move works
    core.setPosition("PiezoZ", 50.0)
    idle(core, "PiezoZ", 5.0)
    assert core.getProperty("PiezoZ", "LastError") == ""
    assert core.getPosition("PiezoZ") == pytest.approx(50.0, abs=1e-4)


def test_the_emergency_stop_stops_all_axes_and_latches(core, fake) -> None:
    core.setProperty("PiezoXY", "Speed_um_per_s", 10.0)
    core.setXYPosition(20.0, 0.0)  # 2 s
    time.sleep(0.1)
    emergency_stop(core, "test")
    assert "#24" in fake.log
    time.sleep(0.05)
    x = fake.world.position("X")
    time.sleep(0.1)
    assert fake.world.position("X") == pytest.approx(x, abs=1e-6) and x < 19.0
    with pytest.raises(RuntimeError, match=r"[Ll]atched|emergency"):
        core.setPosition("PiezoZ", 70.0)
    reset_emergency_stop(core)
    core.setPosition("PiezoZ", 70.0)
    idle(core, "PiezoZ", 5.0)
    assert core.getPosition("PiezoZ") == pytest.approx(70.0, abs=1e-4)


def test_a_dropped_connection_says_what_the_axes_may_do_and_reload_reconnects(
    core, fake, world, tmp_path
) -> None:
    core.setProperty("PiezoZ", "Speed_um_per_s", 20.0)
    core.setPosition("PiezoZ", 80.0)  # 1 s
    time.sleep(0.1)
    fake.drop()
    idle(core, "PiezoZ", 5.0)
    err = core.getProperty("PiezoZ", "LastError")
    assert "connection" in err and "lost" in err and "last target" in err, err
    with pytest.raises(Exception, match="lost"):
        core.getPosition("PiezoZ")
    # the controller goes on (its servo loop does not need the host)
    time.sleep(1.2)
    assert world.position("Z") == pytest.approx(80.0)
    # a new connection: reload the config
    core.unloadAllDevices()
    core.loadSystemConfiguration(str(pi_config(tmp_path, tcp=fake.address)))
    assert core.getPosition("PiezoZ") == pytest.approx(80.0, abs=1e-4)


def test_a_silent_controller_times_out_with_a_message(core, fake) -> None:
    core.setProperty("PiezoZ", "Speed_um_per_s", 20.0)
    core.setPosition("PiezoZ", 80.0)
    time.sleep(0.05)
    fake.unresponsive = True  # hung, or the cable pulled on a serial line
    idle(core, "PiezoZ", 5.0)  # the 500 ms answer timeout, not a hang
    err = core.getProperty("PiezoZ", "LastError")
    assert "lost" in err and "Timeout" in err, err
    # and a further call says so at once
    with pytest.raises(Exception, match="lost"):
        core.setPosition("PiezoZ", 70.0)


def test_the_serial_line_works_the_same(world, tmp_path) -> None:
    f = FakeGCS(world, model="E-709", axes={"1": "Z"})
    port = f.serve_pty()
    cfg = tmp_path / "z.cfg"
    cfg.write_text(
        "Property,Core,Initialize,0\n"
        "#py pyDevice,PI,napari_seccm.devices,PIHub\n"
        "#py pyDevice,PiezoZ,napari_seccm.devices,PiezoZ\n"
        "#py Parent,PiezoZ,PI\n"
        f"#py Property,PI,Connection,Serial\n#py Property,PI,SerialPort,{port}\n"
        "#py Property,PI,AxisX,\n#py Property,PI,AxisY,\n#py Property,PI,AxisZ,1\n"
        "Property,Core,Initialize,1\n"
    )
    core = load_core(cfg, signals="psygnal")
    try:
        assert core.getProperty("PI", "Model") == "E-709"
        core.setPosition("PiezoZ", 45.0)
        idle(core, "PiezoZ", 5.0)
        assert core.getPosition("PiezoZ") == pytest.approx(45.0, abs=1e-4)
    finally:
        core.unloadAllDevices()
        f.close()


def test_a_wrong_axis_name_is_refused_naming_the_controllers_axes(fake, tmp_path, caplog) -> None:
    cfg = pi_config(tmp_path, tcp=fake.address, extra="#py Property,PI,AxisZ,Z\n")
    try:
        core = load_core(cfg, signals="psygnal")
    except Exception as e:  # a failed hub may fail the load
        msg = str(e) + caplog.text
    else:
        msg = caplog.text
        core.unloadAllDevices()
    assert "has axes ['1', '2', '3'], not Z=Z" in msg
    assert not fake.world.axes["X"].moving()


def test_the_approach_needs_a_current_source(core) -> None:
    core.setProperty("PiezoZ", "Approach_StopZ_um", 10.0)
    core.setProperty("PiezoZ", "Approach", "Start")
    idle(core, "PiezoZ", 5.0)
    assert "ApproachCurrentFrom" in core.getProperty("PiezoZ", "Approach_Result")


class _WorldMonitor:
    """A current stream read straight off the fake cell, in blocks (the
    software approach's loop on its own, without a potentiostat hub)."""

    sample_rate_hz = 10000.0

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.t = time.monotonic()

    def read(self, timeout_s: float) -> np.ndarray:
        time.sleep(max(timeout_s, 0.0))
        now = time.monotonic()
        n = max(int((now - self.t) * self.sample_rate_hz), 0)
        if n == 0:
            return np.empty((2, 0))
        i = self.world.sample_current("A", n, self.sample_rate_hz)
        t = self.t + np.arange(1, n + 1) / self.sample_rate_hz
        self.t = t[-1]
        return np.vstack((t, i))

    def close(self) -> None:
        pass


def test_the_software_approach_halts_the_axis_on_contact(world) -> None:
    """The approach loop against the fake PI axis: contact within the
    meniscus of the surface, the stage halted, latency measured."""
    from pipython.pidevice.gcs2.gcs2commands import GCS2Commands
    from pipython.pidevice.gcsmessages import GCSMessages
    from pipython.pidevice.interfaces.pisocket import PISocket

    f = FakeGCS(world)
    host, port = f.serve_tcp()
    gw = PISocket(host, port)
    gcs = GCS2Commands(GCSMessages(gw))
    try:
        surface = world.surface_um()
        gcs.SVO("3", True)
        gcs.MOV("3", surface + 0.5)
        while not gcs.qONT("3")["3"]:
            time.sleep(0.001)
        world.set_cell("A", True)
        world.set_potential("A", 1.0)
        speed = 1.0
        gcs.VEL("3", speed)
        r = software_approach(
            z0_um=surface + 0.5,
            stop_z_um=surface - 0.5,
            speed_um_s=speed,
            threshold_A=50e-12,
            mode="absolute",
            confirm_samples=3,
            monitor=_WorldMonitor(world),
            start_descent=lambda: gcs.MOV("3", surface - 0.5),
            halt=lambda: gcs.HLT("3", noraise=True),
            position_um=lambda: gcs.qPOS("3")["3"],
            abort=threading.Event(),
        )
        assert r["reason"] == "contact", r
        meniscus = world.rig.probe("A").pipette.meniscus_height_um
        assert surface - 0.05 < r["contact_z_um"] < surface + meniscus + 0.05
        # halted: overshoot = speed x latency (a few ms here: well under 50 nm)
        assert 0 <= r["detection_latency_s"] < 0.05
        assert r["contact_z_um"] - r["final_z_um"] < speed * 0.05 + 0.01
        time.sleep(0.05)
        assert world.position("Z") == pytest.approx(r["final_z_um"], abs=1e-3)
        assert r["trace"].shape[0] == 3 and r["trace"].shape[1] > 100
    finally:
        gw.close()
        f.close()
