"""However the process ends, the probe ends safe.

Each test runs the real CLI, or a real script, in a subprocess on the scripted
rig of ``_fake_rig`` (no physics), paced so that a scan takes a few seconds,
with its faults set from the environment; it sends a real signal (``os.kill``)
once the scan is seen running, then checks the store on disk, what the process
printed, and the rig's own log of every Z move, cell switch and latch, which
the rig appends to a file as they happen (so it survives any ending of the
process): where the pipette ended, whether the cell ended off, and whether
anything moved after the emergency stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _fake_rig import SURFACE_Z_UM, fake_config
from _scan_helpers import assert_done_points_intact, cli_cmd, done_count, stop_process

from napari_seccm.acquisition.plan import RectangleArea, SafetySettings, ScanPlan
from napari_seccm.acquisition.store import ScanStore

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals (SIGHUP, SIGTERM sent with os.kill)"
)

TESTS = Path(__file__).resolve().parent
RETRACT_UM = 1.0  # the plan's retract
FLYBACK_UM = 2.0  # the plan's fly-back extra: the teardown lifts to contact + 3 um
#: a Z move to this height or above hangs deaf to the stop: only the teardown's
#: retract to the safe height (contact + retract + fly-back = 13 um) goes there
#: (the serpentine plan below has no fly-back hops)
HANG_Z_UM = SURFACE_Z_UM + RETRACT_UM + FLYBACK_UM - 0.5
#: the deadline of a step: the hung retract would wait this long without the
#: emergency stop
DEADLINE_MARGIN_S = 60.0

#: the scripted rig, paced (every move, approach and program takes PACE s of
#: wall time; a stop ends it at once), faults from $PACED_RIG, and a log
PACED_RIG = """
import json, os, threading
import numpy as np
from _fake_rig import ScriptedController, ScriptedHub

CFG = json.loads(os.environ.get("PACED_RIG", "{}"))


class PacedController(ScriptedController):
    def __init__(self):
        super().__init__()
        self.pace_s = float(CFG.get("pace_s", 0.01))
        self.hang_at = float(CFG.get("z_hang_at_or_above_um", "inf"))
        self.log_path = CFG["log"]
        self._log_lock = threading.Lock()
        self.fault.update(CFG.get("fault", {}))
        for op, faults in CFG.get("next", {}).items():
            self.next[op] = list(faults)

    def record(self, op, **kw):
        entry = {"op": op, "z": self.z, "cell": self.cell, "contact": self.in_contact, **kw}
        with self._log_lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\\n")

    def move_xy_um(self, x, y, speed_um_s, abort):
        self.record("xy-start")
        if abort.wait(self.pace_s):
            return self.record("xy-aborted")
        super().move_xy_um(x, y, speed_um_s, abort)
        self.record("xy")

    def move_z_um(self, probe, z, speed_um_s, abort):
        self.record("z-start", target=z)
        if z >= self.hang_at:
            with self._lock:
                self.next["z"].insert(0, "hang-forever")
            self.record("z-hang", target=z)
        elif abort.wait(self.pace_s):
            return self.record("z-aborted", target=z)
        super().move_z_um(probe, z, speed_um_s, abort)
        self.record("z", target=z)

    def approach(self, probe, stop_z_um, speed_um_s, threshold_A, mode, confirm, abort):
        self.record("approach-start")
        if abort.wait(self.pace_s):
            self.record("approach-aborted")
            return {"contact": False, "contact_z_um": float("nan"), "final_z_um": self.z,
                    "duration_s": 0.0, "reason": "aborted", "trace": np.empty((3, 0))}
        out = super().approach(probe, stop_z_um, speed_um_s, threshold_A, mode, confirm, abort)
        self.record("approach", contact_z=out["contact_z_um"])
        return out

    def run_program(self, channel, program, abort):
        self.record("program-start")
        if abort.wait(self.pace_s):
            self.record("program-aborted")
            return np.empty((3, 0))
        out = super().run_program(channel, program, abort)
        self.record("program")
        return out

    def set_cell(self, channel, on):
        try:
            super().set_cell(channel, on)
        finally:
            self.record("cell-on" if on else "cell-off")


class PacedHub(ScriptedHub):
    def make_controller(self):
        return PacedController()

    def emergency_stop(self, reason=""):
        super().emergency_stop(reason)
        self.controller.record("estop")  # latched: every later start is refused
"""

#: a script that scans on the paced rig: `run`, `start-wait` or `start-join`;
#: it prints POINT n for every point the scan records, and what happened after
SCRIPT = """
import signal, sys, threading
from napari_seccm.configs import load_core
from napari_seccm.acquisition.plan import ScanPlan
from napari_seccm.acquisition.scan import Scan

mode, config, plan, store = sys.argv[1:5]
core = load_core(config, signals="psygnal")
scan = Scan.create(core, ScanPlan.load(plan), store)
core.mda.events.frameReady.connect(lambda *a: print("POINT", scan.points_done, flush=True))
if "--own-sighup-handler" in sys.argv:
    def mine(signum, frame):
        print("MY HANDLER", signal.Signals(signum).name, "scan running:", scan.is_running(),
              flush=True)
    signal.signal(signal.SIGHUP, mine)
if mode == "run":
    status = scan.run()
    print("RETURNED", status, "handler restored:",
          signal.getsignal(signal.SIGHUP) is globals().get("mine", signal.SIG_DFL), flush=True)
elif mode == "start-wait":
    scan.start()
    try:
        scan.wait()
    except KeyboardInterrupt:
        print("INTERRUPTED, status", scan.final_status, flush=True)
        raise
    print("RETURNED", scan.final_status, flush=True)
elif mode == "start-join":
    scan.start()
    next(t for t in threading.enumerate() if t.name == "seccm-scan").join()
"""


# ------------------------------------------------------------------ helpers
class Rig:
    """The paced rig's files: its module, config, plan and log."""

    def __init__(self, folder: Path, **script) -> None:
        self.folder = folder
        (folder / "_paced_rig.py").write_text(PACED_RIG)
        cfg = fake_config(folder)
        cfg.write_text(cfg.read_text().replace("_fake_rig,ScriptedHub", "_paced_rig,PacedHub"))
        self.config = cfg
        self.plan = folder / "plan.yaml"
        ScanPlan(
            area=RectangleArea(width_um=10.0, height_um=10.0),  # 100 points, ~4 s
            pitch_um=1.0,
            order="serpentine",
            retract_um=RETRACT_UM,
            flyback_extra_um=FLYBACK_UM,
            safety=SafetySettings(deadline_margin_s=DEADLINE_MARGIN_S),
        ).save(self.plan)
        self.n_points = 100
        self.log = folder / "rig.jsonl"
        self.script = {"pace_s": 0.01, "log": str(self.log), **script}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS), str(self.folder), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PACED_RIG"] = json.dumps(self.script)
        env["PYTEST_RUNNING"] = "1"
        env["NO_COLOR"] = "1"
        env["COLUMNS"] = "200"
        return env

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


class Proc:
    """A subprocess whose output is read as it comes, line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.p = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(s, b), daemon=True)
            for s, b in ((self.p.stdout, self.out), (self.p.stderr, self.err))
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, predicate, what: str, timeout: float = 60.0) -> None:
        t_end = time.monotonic() + timeout
        while not predicate():
            if self.p.poll() is not None:
                time.sleep(0.2)  # the last lines
                pytest.fail(
                    f"the process ended ({self.p.returncode}) before {what}:\n"
                    f"{self.stdout[-2000:]}\n{self.stderr[-3000:]}"
                )
            if time.monotonic() > t_end:
                pytest.fail(
                    f"timed out after {timeout} s waiting for {what}:\n"
                    f"{self.stdout[-2000:]}\n{self.stderr[-3000:]}"
                )
            time.sleep(0.01)

    def kill(self, sig: int) -> None:
        assert self.p.poll() is None, "the scan ended before the signal"
        os.kill(self.p.pid, sig)

    def end(self, timeout: float = 60.0) -> int:
        rc = self.p.wait(timeout)
        for t in self._readers:
            t.join(10)
        return rc

    def stop(self) -> None:
        stop_process(self.p)


def points_printed(proc: Proc) -> int:
    return sum(line.startswith("POINT") for line in proc.out)


def read_store(path: Path) -> tuple[str, str, int]:
    with ScanStore.open(path) as s:
        return s.status, s.meta["reason"], int(s.done_mask().sum())


def max_contact_um(path: Path) -> float:
    import numpy as np

    with ScanStore.open(path) as s:
        cz = s.results()["contact_z_um"]
    return float(np.nanmax(cz))


def assert_retracted_and_off(rig: Rig, store: Path) -> None:
    """The rig's last word: above the highest landing by the retract, out of
    contact, the cell off."""
    last = rig.entries()[-1]
    assert not last["cell"], last
    assert not last["contact"], last
    assert last["z"] >= max_contact_um(store) + RETRACT_UM - 1e-6, last


def assert_halted_after_latch(rig: Rig) -> dict:
    """Nothing started once the emergency stop had latched (no retract; the
    step in progress was aborted or ended at that instant), and the cell
    ended off."""
    entries = rig.entries()
    k = next(i for i, e in enumerate(entries) if e["op"] == "estop")
    started = [e for e in entries[k:] if e["op"].endswith("-start")]
    assert not started, f"started after the latch: {started}"
    assert not entries[-1]["cell"], entries[-1]
    return entries[k]


def start_cli(rig: Rig, store: Path, *extra: str) -> Proc:
    return Proc(
        cli_cmd(
            "scan",
            "--config",
            str(rig.config),
            "--plan",
            str(rig.plan),
            "--out",
            str(store),
            *extra,
        ),
        rig.env(),
    )


def start_script(rig: Rig, mode: str, store: Path, *extra: str) -> Proc:
    script = rig.folder / "scan_script.py"
    script.write_text(SCRIPT)
    return Proc(
        [sys.executable, str(script), mode, str(rig.config), str(rig.plan), str(store), *extra],
        rig.env(),
    )


def wait_points_on_disk(proc: Proc, store: Path, n: int = 3) -> int:
    proc.wait_for(lambda: done_count(store) >= n, f"{n} points on disk")
    return done_count(store)


# --------------------------------------------------------------------- CLI
def test_cli_sighup_cancels_retracts_and_exits_129(tmp_path):
    """A closed terminal or a dropped SSH session: the scan is canceled like a
    Ctrl-C (the step in progress aborted, the pipette retracted, the cell
    off), the store closed 'canceled' with every point, exit code 129."""
    rig = Rig(tmp_path)
    store = tmp_path / "hup.seccm.zarr"
    proc = start_cli(rig, store)
    try:
        at_signal = wait_points_on_disk(proc, store)
        proc.kill(signal.SIGHUP)
        rc = proc.end()
    finally:
        proc.stop()
    err = proc.stderr
    assert rc == 129, err
    assert "stopping (SIGHUP: the terminal closed or the session ended): aborting the step" in err
    assert "scan canceled: stopped by SIGHUP" in err
    assert "the pipette is retracted and the cell off" in err and "(exit code 129)" in err
    assert "Traceback" not in err
    status, reason, done = read_store(store)
    assert status == "canceled"
    assert reason == "stopped by SIGHUP (the terminal closed or the session ended)"
    assert at_signal <= done < rig.n_points
    assert_done_points_intact(store)
    assert_retracted_and_off(rig, store)


def test_cli_sigterm_is_an_emergency_stop_that_keeps_the_points(tmp_path):
    """SIGTERM (a service stop, kill): everything halts at once, the cell off,
    latched; nothing moves after the latch (no retract); the store is still
    closed, 'fault', with every point; exit code 143."""
    rig = Rig(tmp_path)
    store = tmp_path / "term.seccm.zarr"
    proc = start_cli(rig, store, "--quiet")
    try:
        at_signal = wait_points_on_disk(proc, store)
        proc.kill(signal.SIGTERM)
        rc = proc.end()
    finally:
        proc.stop()
    err = proc.stderr
    assert rc == 143, err
    assert "EMERGENCY STOP (SIGTERM): every motion and waveform halted" in err
    assert "scan fault: emergency stop (SIGTERM at the command line)" in err
    assert "EMERGENCY STOP latched (SIGTERM)" in err and "(exit code 143)" in err
    assert "Traceback" not in err
    status, reason, done = read_store(store)
    assert status == "fault"
    assert reason.startswith("emergency stop (SIGTERM at the command line): halted where it was")
    assert "latched" in reason
    assert at_signal <= done < rig.n_points
    assert_done_points_intact(store)
    assert_halted_after_latch(rig)


def test_cli_second_ctrl_c_during_a_hung_retract_stops_and_exits_promptly(tmp_path):
    """The first Ctrl-C cancels; the retract of the teardown then hangs, deaf
    to the stop (its deadline is a minute away). A second Ctrl-C triggers the
    emergency stop: the CLI does not wait for that deadline, closes the store
    'fault' with every point and the reason, and exits 1 well within it."""
    rig = Rig(tmp_path, z_hang_at_or_above_um=HANG_Z_UM)
    store = tmp_path / "hang.seccm.zarr"
    proc = start_cli(rig, store, "--quiet")
    try:
        at_signal = wait_points_on_disk(proc, store)
        proc.kill(signal.SIGINT)
        proc.wait_for(lambda: "stopping (Ctrl-C)" in proc.stderr, "the CLI saying it stops")
        proc.wait_for(
            lambda: rig.log.exists() and '"z-hang"' in rig.log.read_text(), "the retract to hang"
        )
        proc.kill(signal.SIGINT)
        t0 = time.monotonic()
        rc = proc.end(timeout=DEADLINE_MARGIN_S + 30)
        elapsed = time.monotonic() - t0
    finally:
        proc.stop()
    err = proc.stderr
    # ~1 s to give up on the hung device, ~5 s for its worker at exit; without
    # the emergency stop it would wait out the retract's deadline (60 s)
    assert elapsed < DEADLINE_MARGIN_S / 2, f"{elapsed:.1f} s after the second Ctrl-C\n{err}"
    assert rc == 1, err
    assert "EMERGENCY STOP (a second Ctrl-C)" in err
    assert "retract failed: emergency stop during the Z move" in err
    assert "(exit code 1)" in err
    assert "Traceback" not in err
    status, reason, done = read_store(store)
    assert status == "fault"  # closed, not left 'running'
    assert reason.startswith("emergency stop (a second Ctrl-C at the command line)")
    assert "stopped by the user" in reason and "retract failed" in reason
    assert at_signal <= done < rig.n_points
    assert_done_points_intact(store)
    hang = next(e for e in rig.entries() if e["op"] == "z-hang")
    assert hang["target"] >= HANG_Z_UM  # it was the teardown's retract that hung
    assert not rig.entries()[-1]["cell"]


def test_cli_a_cell_that_will_not_switch_off_is_a_fault_exit_1(tmp_path):
    """The teardown cannot switch the cell off: the scan measured every point,
    but the rig is not safe: status 'fault' (not 'complete'), the reason
    printed, exit code 1."""
    # the first cell-off is the potentiostat's own at initialization
    rig = Rig(tmp_path, pace_s=0.0, next={"cell-off": ["ok"]}, fault={"cell-off": "error"})
    store = tmp_path / "cell.seccm.zarr"
    proc = start_cli(rig, store, "--quiet")
    try:
        rc = proc.end()
    finally:
        proc.stop()
    err = proc.stderr
    assert rc == 1, err
    assert "scan fault: switching the cell off failed: scripted cell-off error" in err, err
    assert "FAULT: the rig may need a look" in err and "(exit code 1)" in err
    status, reason, done = read_store(store)
    assert status == "fault"
    assert reason == "switching the cell off failed: scripted cell-off error"
    assert done == rig.n_points
    assert_done_points_intact(store)
    last_cell = [e for e in rig.entries() if e["op"].startswith("cell")][-1]
    assert last_cell["cell"], "the scripted cell should have stayed on"


# --------------------------------------------------------------------- API
@pytest.mark.parametrize(
    ("mode", "sig", "own_handler"),
    [
        ("run", signal.SIGTERM, False),
        ("run", signal.SIGHUP, True),
        ("start-wait", signal.SIGHUP, False),
        ("start-wait", signal.SIGTERM, False),
    ],
    ids=["run-sigterm", "run-sighup-own-handler", "start-sighup", "start-sigterm"],
)
def test_a_script_scanning_ends_safe_on_sigterm_and_sighup(tmp_path, mode, sig, own_handler):
    """Scan.run() on the main thread, or Scan.start() then wait(): SIGHUP
    cancels (retracted, cell off, 'canceled'), SIGTERM is the emergency stop
    ('fault', nothing moves after the latch). Then the process ends as the
    sender asked: by the signal itself, or, if the script had its own handler,
    through that handler (put back after the scan)."""
    rig = Rig(tmp_path)
    store = tmp_path / "api.seccm.zarr"
    extra = ("--own-sighup-handler",) if own_handler else ()
    proc = start_script(rig, mode, store, *extra)
    try:
        proc.wait_for(lambda: points_printed(proc) >= 3, "3 points")
        proc.kill(sig)
        rc = proc.end()
    finally:
        proc.stop()
    out, err = proc.stdout, proc.stderr
    name = signal.Signals(sig).name
    status, reason, done = read_store(store)
    # every point reported is kept; the one in flight may be stored before the
    # runner reports it (the store is written first)
    assert points_printed(proc) <= done <= points_printed(proc) + 1, out
    assert done < rig.n_points
    assert_done_points_intact(store)
    if own_handler:
        # the script's handler got the signal after the scan had ended safely
        assert rc == 0, err
        assert f"MY HANDLER {name} scan running: False" in out
        assert "RETURNED canceled handler restored: True" in out
    else:
        assert rc == -sig, err  # ended by the signal, as its sender asked
        assert "RETURNED" not in out
    assert "Traceback" not in err
    if sig == signal.SIGHUP:
        assert f"{name} during a scan: canceling" in err
        assert status == "canceled"
        assert reason == f"stopped by {name}"
        assert_retracted_and_off(rig, store)
    else:
        assert f"{name} during a scan: emergency stop" in err
        assert status == "fault"
        assert reason.startswith(f"emergency stop ({name} received): halted where it was")
        assert_halted_after_latch(rig)


@pytest.mark.parametrize("mode", ["start-wait", "start-join"])
def test_ctrl_c_while_a_script_waits_for_its_scan_ends_it_safely(tmp_path, mode):
    """Scan.start(), then scan.wait() or a join() of the scan's thread, and
    Ctrl-C: Python 3.11 then reports the thread dead, which skipped the cancel
    at exit and lost the points with the cell on. Now wait() cancels and waits
    for the safe end before re-raising, and a join() interrupted ends in the
    at-exit cancel: 'canceled', every point, retracted, cell off."""
    rig = Rig(tmp_path)
    store = tmp_path / "ctrlc.seccm.zarr"
    proc = start_script(rig, mode, store)
    try:
        proc.wait_for(lambda: points_printed(proc) >= 3, "3 points")
        proc.kill(signal.SIGINT)
        rc = proc.end()
    finally:
        proc.stop()
    out, err = proc.stdout, proc.stderr
    assert rc in (-signal.SIGINT, 1), err  # the KeyboardInterrupt reached the top
    assert "KeyboardInterrupt" in err
    status, reason, done = read_store(store)
    assert status == "canceled", reason
    if mode == "start-wait":
        assert "INTERRUPTED, status canceled" in out  # safe before wait() re-raised
        assert reason == "interrupted (KeyboardInterrupt) while waiting for the scan"
    else:
        assert "exiting during a scan: canceling" in err
        assert reason == "canceled at exit: the program ended during the scan"
    assert points_printed(proc) <= done <= points_printed(proc) + 1
    assert done < rig.n_points
    assert_done_points_intact(store)
    assert_retracted_and_off(rig, store)
