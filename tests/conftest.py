"""Fixtures: the simulated SECCM loaded through the real pymmcore-plus core.

Every core here is a ``UniMMCore`` that loads ``micromanager_config/
seccm_simulated.cfg``: one simulated controller hub (``SECCM``) and its
peripherals; initializing the hub starts a fresh simulated experiment. The
simulator's ground truth is read with ``simulated_rig()``, which looks the hub up
by its label: keep one core alive at a time.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pymmcore_plus.experimental.unicore import UniMMCore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]

#: pymmcore-widgets (imported by napari-micromanager too) sets
#: PYMM_SIGNALS_BACKEND=qt for the whole process when it is imported, at
#: collection: every test starts with the value the session began with, so
#: that the CLI's subprocesses and the cores of other tests are not changed
_SIGNALS_AT_START = __import__("os").environ.get("PYMM_SIGNALS_BACKEND")


@pytest.fixture(autouse=True)
def _signals_backend_as_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    if _SIGNALS_AT_START is None:
        monkeypatch.delenv("PYMM_SIGNALS_BACKEND", raising=False)
    else:
        monkeypatch.setenv("PYMM_SIGNALS_BACKEND", _SIGNALS_AT_START)


CONFIG = REPO / "micromanager_config" / "seccm_simulated.cfg"
INIT_LINE = "Property,Core,Initialize,1"


def _new_core() -> UniMMCore:
    """A core whose events are delivered at once on the thread that emits them
    (devices emit on their workers): these tests run no Qt event loop, even
    when a GUI test has made a QApplication."""
    import os

    from napari_seccm.configs import new_core

    old = os.environ.get("PYMM_SIGNALS_BACKEND")
    os.environ["PYMM_SIGNALS_BACKEND"] = "psygnal"
    try:
        return new_core()
    finally:
        if old is None:
            del os.environ["PYMM_SIGNALS_BACKEND"]
        else:
            os.environ["PYMM_SIGNALS_BACKEND"] = old


def _close(core: UniMMCore) -> None:
    core.unloadAllDevices()


def _config_text(seed: int | None, preinit: Sequence[str]) -> str:
    """The shipped config with another seed and extra pre-init lines."""
    lines = CONFIG.read_text().splitlines()
    out = []
    seed_line = f"#py Property,SECCM,Seed,{seed}"
    for line in lines:
        if seed is not None and line.startswith("#py Property,SECCM,Seed,"):
            line = seed_line
        if line.strip() == INIT_LINE:
            out.extend(f"#py Property,{p}" for p in preinit)
        out.append(line)
    assert INIT_LINE in out
    assert seed is None or seed_line in out, "the config sets no SECCM seed"
    return "\n".join(out) + "\n"


@pytest.fixture(scope="session")
def _frozen_heap() -> Iterator[None]:
    """Move the objects alive now (modules, mostly) out of the collector's sight.

    ``gc.collect()`` at each core's teardown otherwise walks ~250k objects of
    numpy/scipy/pymmcore-plus every time (~0.1 s a test); frozen, it is ~free.
    """
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def core(_frozen_heap: None) -> Iterator[UniMMCore]:
    """A UniMMCore with the simulated SECCM config loaded (a fresh experiment)."""
    mmc = _new_core()
    mmc.loadSystemConfiguration(str(CONFIG))
    yield mmc
    _close(mmc)
    del mmc
    gc.collect()


@pytest.fixture
def make_core(tmp_path: Path, _frozen_heap: None) -> Iterator[Callable[..., UniMMCore]]:
    """Factory: ``make_core(seed=None, preinit=("Dev,Prop,Value", ...))``.

    Loads the shipped config, optionally with another ``SECCM`` seed and extra
    pre-init property lines. Finish with one core before making the next
    (``simulated_rig()`` finds the hub by its label).
    """
    made: list[UniMMCore] = []

    def factory(seed: int | None = None, preinit: Sequence[str] = ()) -> UniMMCore:
        cfg = tmp_path / f"seccm_{len(made)}.cfg"
        cfg.write_text(_config_text(seed, preinit))
        mmc = _new_core()
        mmc.loadSystemConfiguration(str(cfg))
        made.append(mmc)
        return mmc

    yield factory
    for mmc in reversed(made):
        _close(mmc)
    made.clear()
    gc.collect()


def land(
    core: UniMMCore,
    potential_V: float = 1.0,
    start_gap_um: float = 1.0,
    speed_um_s: float | None = None,
) -> dict:
    """Cell on at ``potential_V``, Z to ``start_gap_um`` above the surface, approach.

    The approach stops at most ``Pipette_CrashDepth_um`` / 2 below the surface,
    so a miss cannot break the pipette. Returns what the test may need.
    """
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("Potentiostat", "Potential_V", potential_V)
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    crash = core.getProperty("SECCM", "Pipette_CrashDepth_um")
    core.setPosition(surface + start_gap_um)
    core.waitForSystem()
    if speed_um_s is not None:
        core.setProperty("PiezoZ", "Approach_Speed_um_per_s", speed_um_s)
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface - crash / 2)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    result = core.getProperty("PiezoZ", "Approach_Result")
    assert result == "contact", f"approach ended with {result!r}"
    contact_z = core.getProperty("PiezoZ", "Approach_ContactZ_um")
    assert math.isfinite(contact_z)
    return {
        "surface_um": surface,
        "start_z_um": surface + start_gap_um,
        "contact_z_um": contact_z,
        "final_z_um": core.getPosition(),
    }


@pytest.fixture
def lander() -> Callable[..., dict]:
    """The :func:`land` helper, for tests that set the sample up before landing."""
    return land


@pytest.fixture
def landed_core(core: UniMMCore) -> UniMMCore:
    """``core`` with the cell on at 1.0 V and the droplet landed (from 1 um above)."""
    land(core, potential_V=1.0, start_gap_um=1.0)
    return core
