"""Shared fixtures and helpers of the scan tests (plan, scan, store, CLI).

Every core here is a real pymmcore-plus ``UniMMCore`` loaded from a shipped
config with :func:`napari_seccm.configs.load_core`; every store is a real zarr
store on disk. The simulator's ground truth is looked up by the hub's label,
so at most one core is alive at a time: fixtures that scan once for a whole
module unload their core before the tests run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr

from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
from napari_seccm.configs import load_core

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pymmcore_plus.experimental.unicore import UniMMCore

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "micromanager_config"
SIMULATED_CFG = CONFIG_DIR / "seccm_simulated.cfg"
DEMO_CFG = CONFIG_DIR / "seccm_with_demo_microscope.cfg"


# ------------------------------------------------------------------ plans


def pump(seconds: float = 0.2) -> None:
    """Let the Qt event loop run for ``seconds`` (queued signals, timers, paints)."""
    from qtpy.QtWidgets import QApplication

    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        QApplication.processEvents()
        time.sleep(0.01)


def small_plan(width_um: float = 6.0, pitch_um: float = 0.5, **kw: Any) -> ScanPlan:
    """A small square map centred at 0 (6 x 6 um at 0.5 um: 144 points)."""
    return ScanPlan(
        area=RectangleArea(width_um=width_um, height_um=width_um),
        pitch_um=pitch_um,
        **kw,
    )


# ------------------------------------------------------------------- cores
def close_core(core: UniMMCore) -> None:
    core.unloadAllDevices()


def loaded_core(config: str | Path = "seccm_simulated.cfg") -> Iterator[UniMMCore]:
    """Body of a fixture: a fresh UniMMCore with a shipped config, unloaded after.

    Use as ``yield from loaded_core()`` in a test module's own fixture.
    """
    # these tests wait on the acquisition thread's signals without running a Qt
    # event loop: direct (psygnal) signals, even when a GUI test made a QApplication
    core = load_core(config, signals="psygnal")
    yield core
    close_core(core)
    del core
    gc.collect()


def scan_to_store(
    path: str | Path, plan: ScanPlan, sample_props: dict[str, Any] | None = None
) -> Path:
    """Run ``plan`` to completion on a fresh simulated rig (simulated-hub
    properties set first), release the core, return the store's path."""
    from napari_seccm.acquisition.scan import Scan

    core = load_core()
    try:
        for k, v in (sample_props or {}).items():
            core.setProperty("SECCM", k, v)
        status = Scan.create(core, plan, path).run()
        assert status == "complete", status
    finally:
        close_core(core)
        del core
        gc.collect()
    return Path(path)


def rig_state(core: UniMMCore) -> dict[str, Any]:
    """What a scan could change on the instrument: positions, cell, potential, clock."""
    return {
        "xy": tuple(core.getXYPosition()),
        "z": core.getPosition(),
        "cell": core.getProperty("Potentiostat", "Cell"),
        "potential": core.getProperty("Potentiostat", "Potential_V"),
        "sim_time": core.getProperty("SECCM", "InstrumentTime_s"),
    }


def in_contact() -> bool:
    """Ground truth: is the droplet on the surface (the simulated probe's contact)?"""
    from napari_seccm.devices.simulated import simulated_rig

    return simulated_rig().probe().contact is not None


class FrameCounter:
    """Counts points as the MDA runner reports them (``frameReady``) and can act
    after the n-th one (the callback runs on the acquisition thread, at the end
    of the point: pause, cancel or fault injection take effect at the next)."""

    def __init__(
        self,
        core: UniMMCore,
        at: int | None = None,
        action: Callable[[], None] | None = None,
    ):
        self.core = core
        self.at = at
        self.action = action
        self.metas: list[dict[str, Any]] = []
        self.fired = threading.Event()
        core.mda.events.frameReady.connect(self._on_frame)

    @property
    def n(self) -> int:
        return len(self.metas)

    def _on_frame(self, img: np.ndarray, event: Any, meta: dict) -> None:
        self.metas.append(dict(meta["seccm"]))
        if self.at is not None and len(self.metas) == self.at and self.action is not None:
            self.action()
            self.fired.set()

    def disconnect(self) -> None:
        self.core.mda.events.frameReady.disconnect(self._on_frame)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` s."""
    t_end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > t_end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def at_approach(core: UniMMCore, nth: int, action: Callable[[], None]) -> Iterator[None]:
    """While the block runs (a scan, typically), call ``action()`` on a thread
    as soon as PiezoZ's ``nth`` approach (1: the first) is seen to start."""
    done = threading.Event()

    def watcher() -> None:
        starts, was = 0, False
        while not done.is_set():
            now = core.getProperty("PiezoZ", "Approach") == "Start"
            if now and not was:
                starts += 1
                if starts == nth:
                    action()
                    return
            was = now
            time.sleep(0.005)

    th = threading.Thread(target=watcher, daemon=True)
    th.start()
    try:
        yield
    finally:
        done.set()
        th.join(5)


# -------------------------------------------------------------- store checks
def assert_done_points_intact(path: str | Path) -> np.ndarray:
    """Every point flagged done has its results, map pixels and full trace.

    Reads the arrays with plain zarr (not the package's reader), so a bug in
    the reader cannot hide a bug in the writer. Returns the done mask.
    """
    root = zarr.open_group(str(path), mode="r")
    done = root["results/done"][:].astype(bool)
    status = root["results/status"][:]
    value = root["results/value_A"][:]
    cz = root["results/contact_z_um"][:]
    rows, cols = root["points/row"][:], root["points/col"][:]
    cmap = root["maps/current/0"][:]
    hmap = root["maps/contact_height/0"][:]
    cur = root["traces/current_A"][:]
    pot = root["traces/potential_V"][:]
    ok = done & (status == 1)
    assert set(np.unique(status[done])) <= {1, 2, 3, 4, 5}, "a done point has no landing status"
    assert np.isfinite(value[ok]).all()
    assert np.isfinite(cz[ok]).all()
    assert np.isfinite(cmap[rows[ok], cols[ok]]).all()
    assert np.isfinite(hmap[rows[ok], cols[ok]]).all()
    np.testing.assert_allclose(cmap[rows[ok], cols[ok]], value[ok].astype(np.float32), rtol=1e-6)
    assert np.isfinite(cur[ok]).all(), "a completed point has a missing (NaN) trace sample"
    assert np.isfinite(pot[ok]).all()
    # the map value is the mean current over the readout window of the trace
    meta = root.attrs["seccm"]
    fs = meta["sample_rate_Hz"]
    w0, w1 = meta["readout_window_s"]
    t = np.arange(cur.shape[1]) / fs
    win = (t >= w0 - 1e-9) & (t < w1 - 1e-9)
    if ok.any():
        np.testing.assert_allclose(
            cur[ok][:, win].astype(np.float64).mean(axis=1), value[ok], rtol=1e-5
        )
    return done


def done_count(path: str | Path) -> int:
    """Points flagged done, read straight from the store (safe while it is written)."""
    try:
        return int(zarr.open_array(str(Path(path) / "results" / "done"), mode="r")[:].sum())
    except (FileNotFoundError, KeyError, ValueError, json.JSONDecodeError):
        return 0  # not created yet


def tree_snapshot(path: str | Path) -> dict[str, bytes]:
    """Every file of a store (but the lock file) and its bytes."""
    path = Path(path)
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# ---------------------------------------------------------------------- maps
def detrend_plane(m: np.ndarray) -> np.ndarray:
    ny, nx = m.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    a = np.column_stack([np.ones(m.size), xx.ravel(), yy.ravel()])
    coef, *_ = np.linalg.lstsq(a, m.ravel().astype(np.float64), rcond=None)
    return m - (a @ coef).reshape(m.shape)


def dominant_wavevector(m: np.ndarray, pitch_um: float, pad: int = 512) -> tuple[float, float]:
    """(period um, direction of the wave vector in degrees CCW from +x) of the
    strongest spatial frequency of a map indexed [y, x]."""
    r = detrend_plane(m)
    ny, nx = r.shape
    w = np.outer(np.hanning(ny), np.hanning(nx))
    f = np.abs(np.fft.fft2(r * w, s=(pad, pad)))
    f[0, 0] = 0.0
    iy, ix = np.unravel_index(int(np.argmax(f)), f.shape)
    ky = np.fft.fftfreq(pad, d=pitch_um)[iy]
    kx = np.fft.fftfreq(pad, d=pitch_um)[ix]
    return 1.0 / math.hypot(kx, ky), math.degrees(math.atan2(ky, kx))


def angle_diff_mod180(a: float, b: float) -> float:
    d = (a - b) % 180.0
    return min(d, 180.0 - d)


# ----------------------------------------------------------------------- CLI
def cli_cmd(*args: str) -> list[str]:
    """The installed console script if present, else ``python -m napari_seccm.cli``."""
    script = Path(sys.executable).parent / "napari-seccm"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "napari_seccm.cli", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTEST_RUNNING", "1")  # pymmcore-plus: no debug log file
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=cwd,
    )


def start_cli(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cli_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=cwd,
    )


def cli_info(path: str | Path) -> dict[str, Any]:
    r = run_cli("info", str(path), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def stop_process(proc: subprocess.Popen) -> None:
    """Kill a CLI process of a failed test (by its own pid only)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
