"""A scripted controller hub with no physics, for driving the engine through
every state and fault of a hop.

``ScriptedHub`` is a real :class:`napari_seccm.devices.SECCMHub` (so its
peripherals are the package's own ``PiezoXY``, ``PiezoZ`` and ``Potentiostat``,
with their workers, interlocks and emergency stop); behind it is
:class:`ScriptedController`: a flat surface at ``SURFACE_Z_UM``, instant moves,
and a *script* of faults that a test sets per operation. It keeps a log of
every operation with the Z height at that moment, so a test can check that no
lateral move happened low and that the cell ended off.

Load it with :func:`fake_config` (a Micro-Manager config with ``#py`` lines);
the module is importable because the tests folder is on ``sys.path``.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from napari_seccm.devices import PiezoXY, PiezoZ, Potentiostat, SECCMHub
from napari_seccm.model.program import Program

__all__ = ["PiezoXY", "PiezoZ", "Potentiostat", "ScriptedController", "ScriptedHub"]

#: the flat surface of the fake rig, um
SURFACE_Z_UM = 10.0
#: the current of a landed droplet, A
CURRENT_A = 1e-9

#: operations a test can script, and what each fault means
FAULTS = {
    "xy": ("ok", "stuck", "error", "hang", "hang-forever"),
    "z": ("ok", "error", "hang", "hang-forever", "short"),
    "approach": ("ok", "miss", "low", "high", "error", "hang", "hang-forever"),
    "program": ("ok", "nan", "empty", "error", "hang"),
    "cell-off": ("ok", "error"),
}


class ScriptedController:
    """Instant, physics-free hardware whose faults follow a script."""

    current_ranges_A = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6)

    def __init__(self) -> None:
        self.xy = (0.0, 0.0)
        self.z = 30.0
        self.cell = False
        self.potential = 0.0
        self.rate = 5000.0
        #: fault of every later call of an operation ("ok" = none)
        self.fault: dict[str, str] = dict.fromkeys(FAULTS, "ok")
        #: faults for the next n calls only: {op: [fault, fault, ...]}
        self.next: dict[str, list[str]] = {op: [] for op in FAULTS}
        self.log: list[tuple[str, float, Any]] = []
        self.in_contact = False
        self._lock = threading.Lock()
        #: frees operations that hang deaf to a stop (at a test's end)
        self.release = threading.Event()

    # -------------------------------------------------------------- script
    def _take(self, op: str) -> str:
        with self._lock:
            if self.next[op]:
                return self.next[op].pop(0)
            return self.fault[op]

    def _behave(self, op: str, fault: str, abort: threading.Event) -> None:
        if fault == "error":
            raise RuntimeError(f"scripted {op} error")
        if fault == "hang":
            abort.wait()  # never finishes on its own; a stop ends it
        elif fault == "hang-forever":
            self.release.wait(600)  # deaf even to a stop (a test releases it)

    def _touch(self) -> None:
        self.in_contact = self.z <= SURFACE_Z_UM + 1e-9

    # ---------------------------------------------------------------- XY
    def get_xy_um(self) -> tuple[float, float]:
        return self.xy

    def move_xy_um(self, x: float, y: float, speed_um_s: float, abort: threading.Event) -> None:
        fault = self._take("xy")
        self.log.append(("xy", self.z, (x, y, self.in_contact)))
        self._behave("xy", fault, abort)
        if fault in ("hang", "hang-forever"):
            return
        if fault != "stuck":
            self.xy = (float(x), float(y))

    # ----------------------------------------------------------------- Z
    def get_z_um(self, probe: str) -> float:
        return self.z

    def move_z_um(self, probe: str, z: float, speed_um_s: float, abort: threading.Event) -> None:
        fault = self._take("z")
        self.log.append(("z", self.z, z))
        self._behave("z", fault, abort)
        if fault in ("hang", "hang-forever"):
            return
        self.z = float(z) + (0.2 if fault == "short" else 0.0)
        if self.z > SURFACE_Z_UM + 0.3:
            self.in_contact = False

    def approach(
        self,
        probe: str,
        stop_z_um: float,
        speed_um_s: float,
        threshold_A: float,
        mode: str,
        confirm_samples: int,
        abort: threading.Event,
    ) -> dict[str, Any]:
        fault = self._take("approach")
        self.log.append(("approach", self.z, stop_z_um))
        self._behave("approach", fault, abort)
        empty = np.empty((3, 0))
        if fault in ("hang", "hang-forever"):
            return _result(False, math.nan, self.z, "aborted", empty)
        if fault == "miss" or stop_z_um > SURFACE_Z_UM:
            self.z = stop_z_um
            return _result(False, math.nan, self.z, "no contact", empty)
        self.z = SURFACE_Z_UM - 0.01  # stopped just past the contact
        self.in_contact = True
        reported = SURFACE_Z_UM + {"low": -5.0, "high": 3.0}.get(fault, 0.0)
        return _result(True, reported, self.z, "contact", empty)

    # ------------------------------------------------------- potentiostat
    def set_cell(self, channel: str, on: bool) -> None:
        if not on and self._take("cell-off") == "error":
            raise RuntimeError("scripted cell-off error")
        self.cell = bool(on)
        self.log.append(("cell", self.z, on))

    def set_potential(self, channel: str, volts: float) -> None:
        self.potential = float(volts)

    def read_current(self, channel: str) -> float:
        return CURRENT_A if (self.in_contact and self.cell) else 0.0

    def configure(
        self, channel: str, *, range_A: float, filter_hz: float, sample_rate_hz: float
    ) -> None:
        self.rate = sample_rate_hz

    def run_program(self, channel: str, program: Program, abort: threading.Event) -> np.ndarray:
        fault = self._take("program")
        self.log.append(("program", self.z, self.in_contact))
        self._behave("program", fault, abort)
        if fault in ("hang", "empty"):
            return np.empty((3, 0))
        e = program.sample(self.rate)
        i = np.full(e.size, CURRENT_A if (self.in_contact and self.cell) else 0.0)
        if fault == "nan":
            i[:] = np.nan
        return np.vstack((np.arange(e.size) / self.rate, e, i))

    def cells_off(self) -> None:
        """Every cell off at once (the hub's halt): the same switch, the same faults."""
        self.set_cell("A", False)


def _result(contact: bool, cz: float, z: float, reason: str, trace: Any) -> dict[str, Any]:
    return {
        "contact": contact,
        "contact_z_um": cz,
        "final_z_um": z,
        "duration_s": 0.0,
        "reason": reason,
        "trace": trace,
    }


class ScriptedHub(SECCMHub):
    """A controller hub over :class:`ScriptedController`."""

    PERIPHERALS = (
        ("PiezoXY", "lateral stage"),
        ("PiezoZ", "Z stage"),
        ("Potentiostat", "potentiostat"),
    )

    def make_controller(self) -> ScriptedController:
        return ScriptedController()


def fake_config(folder: Path) -> Path:
    """A Micro-Manager config of the scripted rig."""
    path = folder / "scripted_rig.cfg"
    lines = [
        "Property,Core,Initialize,0",
        "#py pyDevice,Hub,_fake_rig,ScriptedHub",
        "#py pyDevice,XY,_fake_rig,PiezoXY",
        "#py pyDevice,Z,_fake_rig,PiezoZ",
        "#py pyDevice,Potentiostat,_fake_rig,Potentiostat",
        "#py Parent,XY,Hub",
        "#py Parent,Z,Hub",
        "#py Parent,Potentiostat,Hub",
        "Property,Core,Initialize,1",
        "#py Property,Core,XYStage,XY",
        "#py Property,Core,Focus,Z",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def controller(label: str = "Hub") -> ScriptedController:
    """The scripted controller behind the loaded hub ``label``."""
    from napari_seccm.devices._hub import loaded_hub

    return loaded_hub(label, ScriptedHub).controller
