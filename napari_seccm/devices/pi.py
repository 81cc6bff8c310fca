"""PI piezo controllers (E-727, E-709, E-712) through ``pipython``'s pure-Python gateways.

``PIHub`` is a controller hub with ``PiezoXY`` and ``PiezoZ`` as peripherals.
It talks GCS 2 over TCP (the controller's Ethernet port) or a serial line (its
USB virtual COM port or RS-232) with ``pipython``'s own socket and serial
gateways: no vendor shared library. ``pipython`` has a proprietary licence:
it is the optional extra ``napari-seccm[pi]`` and is imported only when a PI
hub initializes.

What it does with the controller: servo on for its axes at start; the travel
from ``TMN?``/``TMX?`` narrows the stages' own limits; a move sets the
velocity (``VEL``: the XY velocities split so that both axes arrive together)
and the target (``MOV``), then polls the motion status (``#5``) until the axes
are on target (``ONT?``); ``core.stop`` halts (``HLT``); the emergency stop
sends ``#24`` (stop all). Every GCS error becomes a message that names the
command, the controller's error text and its code.

The approach: a PI controller does not see the current. With the pre-init
``ApproachCurrentFrom`` set to the label of a potentiostat device of another
hub (an NI-DAQ, a PalmSens), the Z axis descends in one closed-loop move
while that device's current stream is watched, and the axis is halted on
contact (:func:`~._approach.software_approach`; the result says the detection
latency). Without it, the approach is refused with that explanation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from ..model.errors import InstrumentError
from ._approach import ApproachProgress, software_approach
from ._base import register
from ._hub import SECCMHub, _same_core, live_hubs
from .stages import PiezoXY, PiezoZ

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

__all__ = ["PIController", "PIHub", "PiezoXY", "PiezoZ"]

#: poll period of the motion status while a move runs, s
POLL_S = 0.002


def _import_pipython() -> Any:
    try:
        import pipython
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise RuntimeError(
            f"a PI controller needs the pipython package: pip install 'napari-seccm[pi]' ({e})"
        ) from e
    # pipython logs every exchange at DEBUG through its 'PIlogger', some with a
    # dict as the only argument, which logging then takes for a mapping of
    # names: formatting fails wherever DEBUG records are handled (a debug log,
    # pytest). Its INFO and above are kept.
    pilog = logging.getLogger("PIlogger")
    if pilog.level in (logging.NOTSET, logging.DEBUG):
        pilog.setLevel(logging.INFO)
    return pipython


class PIError(InstrumentError):
    """The controller refused a command (a GCS error)."""


class PIConnectionLost(InstrumentError):
    """The link to the controller broke; what the axes do now is the controller's."""


class PIController:
    """The connection to one PI controller, in the controller protocol of the
    SECCM peripherals (``get_xy_um``, ``move_xy_um``, ``get_z_um``,
    ``move_z_um``, ``approach``, ``travel_um``, ``emergency_stop``, ``close``)."""

    runs_inline = False

    def __init__(
        self,
        *,
        connection: str,
        host: str = "",
        tcp_port: int = 50000,
        serial_port: str = "",
        baud: int = 115200,
        axes: dict[str, str],
        timeout_ms: int = 3000,
        name: str = "PI",
    ) -> None:
        self.name = name
        self.axes = {role: ax for role, ax in axes.items() if ax}
        self._lock = threading.RLock()
        self._where = ""
        self.model = "PI controller"
        self.monitor_factory: Any = None
        #: the samples of the approach in progress so far
        self._progress = ApproachProgress()
        self._lost: str = ""
        _import_pipython()
        from pipython.pidevice.gcs2.gcs2commands import GCS2Commands
        from pipython.pidevice.gcsmessages import GCSMessages

        try:
            if connection == "TCP":
                from pipython.pidevice.interfaces.pisocket import PISocket

                self._where = f"{host}:{tcp_port}"
                self.gateway = PISocket(host=host, port=int(tcp_port))
            elif connection == "Serial":
                from pipython.pidevice.interfaces.piserial import PISerial

                self._where = f"{serial_port} at {baud} baud"
                self.gateway = PISerial(port=serial_port, baudrate=int(baud))
            else:
                raise ValueError(f"Connection must be TCP or Serial, not {connection!r}")
        except (OSError, ValueError) as e:
            raise RuntimeError(
                f"{name}: cannot reach the PI controller at {self._where}: {e}"
            ) from e
        self.messages = GCSMessages(self.gateway)
        self.messages.timeout = int(timeout_ms)
        self.gcs = GCS2Commands(self.messages)
        idn = self._call("*IDN?", self.gcs.qIDN).strip()
        self.model = next((m for m in ("E-727", "E-709", "E-712") if m in idn), idn)
        with contextlib.suppress(Exception):
            csv = float(self._call("CSV?", lambda: self.messages.read("CSV?")))
            if csv > 2.0:
                self.close()
                raise RuntimeError(
                    f"{name}: {idn} speaks GCS {csv:g}; this driver speaks GCS 2 "
                    "(E-727, E-709, E-712)"
                )
        have = self._call("SAI?", self.gcs.qSAI)
        missing = [f"{r}={a}" for r, a in self.axes.items() if a not in have]
        if missing:
            self.close()
            raise RuntimeError(
                f"{name}: the controller ({self.model}) has axes {have}, not "
                f"{', '.join(missing)}: set the hub's Axis properties to its axis names"
            )
        ids = list(self.axes.values())
        self._call("SVO (servo on)", lambda: self.gcs.SVO(ids, [True] * len(ids)))
        lo = self._call("TMN?", lambda: self.gcs.qTMN(ids))
        hi = self._call("TMX?", lambda: self.gcs.qTMX(ids))
        self._travel = {r: (float(lo[a]), float(hi[a])) for r, a in self.axes.items()}
        log.info(
            "%s: %s at %s, axes %s, travel %s",
            name,
            self.model,
            self._where,
            self.axes,
            self._travel,
        )

    # --------------------------------------------------------------- calls
    def _call(self, what: str, fn: Any) -> Any:
        """One GCS exchange; its errors in words (the command, the
        controller's text and code, or a lost link)."""
        from pipython import GCSError

        if self._lost:
            raise PIConnectionLost(self._lost)
        with self._lock:
            try:
                return fn()
            except GCSError as e:
                code = getattr(e, "val", None)
                if code is not None and int(code) < 0:  # the link, not the controller
                    self._lose(what, str(e))
                raise PIError(
                    f"{self.name} ({self.model}) refused {what}: {e} (GCS error {code})"
                ) from e
            except (OSError, ValueError, AttributeError) as e:
                self._lose(what, str(e) or type(e).__name__)

    def _lose(self, what: str, why: str) -> None:
        self._lost = (
            f"the connection to {self.name} ({self.model} at {self._where}) was lost during "
            f"{what} ({why}): the controller keeps its servo loop, so the axes go on to their "
            "last target or hold where they are; check the stage before anything else, then "
            "reload the config to reconnect"
        )
        raise PIConnectionLost(self._lost)

    def travel_um(self, role: str) -> tuple[float, float] | None:
        return self._travel.get(role)

    def _axis(self, role: str) -> str:
        try:
            return self.axes[role]
        except KeyError:
            raise RuntimeError(
                f"{self.name} drives no {role} axis (its Axis{role} is empty)"
            ) from None

    def _wait_on_target(
        self, ids: list[str], abort: threading.Event, what: str, eta_s: float
    ) -> float:
        """Poll until the axes have stopped and are on target; halt on abort.
        Returns the fraction done (1: on target)."""
        t_end = time.monotonic() + 2 * eta_s + 2.0
        while True:
            if abort.wait(POLL_S):
                self._halt(ids)
                return 0.0
            moving = self._call("#5 (motion status)", lambda: self.gcs.IsMoving(ids))
            if not any(moving.values()):
                ont = self._call("ONT?", lambda: self.gcs.qONT(ids))
                if all(ont.values()):
                    return 1.0
            if time.monotonic() > t_end:
                self._halt(ids)
                raise RuntimeError(
                    f"{self.name}: {what} did not end on target within {2 * eta_s + 2:.3g} s "
                    f"(axes {ids}); halted"
                )

    def _halt(self, ids: list[str]) -> None:
        with contextlib.suppress(RuntimeError):
            self._call("HLT", lambda: self.gcs.HLT(ids, noraise=True))

    # ------------------------------------------------------------------ XY
    def get_xy_um(self) -> tuple[float, float]:
        ax, ay = self._axis("X"), self._axis("Y")
        pos = self._call("POS?", lambda: self.gcs.qPOS([ax, ay]))
        return float(pos[ax]), float(pos[ay])

    def move_xy_um(self, x: float, y: float, speed_um_s: float, abort: threading.Event) -> None:
        ax, ay = self._axis("X"), self._axis("Y")
        x0, y0 = self.get_xy_um()
        d = math.hypot(x - x0, y - y0)
        if d == 0:
            return
        vx = max(speed_um_s * abs(x - x0) / d, 1e-3)
        vy = max(speed_um_s * abs(y - y0) / d, 1e-3)
        self._call("VEL", lambda: self.gcs.VEL([ax, ay], [vx, vy]))
        self._call(f"MOV to ({x:g}, {y:g}) um", lambda: self.gcs.MOV([ax, ay], [x, y]))
        self._wait_on_target([ax, ay], abort, f"the move to ({x:g}, {y:g}) um", d / speed_um_s)

    # ------------------------------------------------------------------- Z
    def get_z_um(self, probe: str) -> float:
        az = self._axis("Z")
        return float(self._call("POS?", lambda: self.gcs.qPOS(az))[az])

    def move_z_um(self, probe: str, z: float, speed_um_s: float, abort: threading.Event) -> None:
        az = self._axis("Z")
        z0 = self.get_z_um(probe)
        self._call("VEL", lambda: self.gcs.VEL(az, speed_um_s))
        self._call(f"MOV Z to {z:g} um", lambda: self.gcs.MOV(az, z))
        self._wait_on_target([az], abort, f"the Z move to {z:g} um", abs(z - z0) / speed_um_s)

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
        if self.monitor_factory is None:
            raise RuntimeError(
                f"{self.name}: a PI controller does not see the current: set the hub's "
                "ApproachCurrentFrom to the label of the potentiostat whose current stops "
                "the approach"
            )
        az = self._axis("Z")
        z0 = self.get_z_um(probe)
        with contextlib.ExitStack() as stack:
            stack.callback(self._progress.reset)  # its samples are the result's now
            monitor = stack.enter_context(self.monitor_factory())
            self._call("VEL", lambda: self.gcs.VEL(az, speed_um_s))
            return software_approach(
                z0_um=z0,
                stop_z_um=stop_z_um,
                speed_um_s=speed_um_s,
                threshold_A=threshold_A,
                mode=mode,
                confirm_samples=confirm_samples,
                monitor=monitor,
                start_descent=lambda: self._call(
                    f"MOV Z to {stop_z_um:g} um (approach)", lambda: self.gcs.MOV(az, stop_z_um)
                ),
                halt=lambda: self._halt([az]),
                position_um=lambda: self.get_z_um(probe),
                abort=abort,
                progress=self._progress,
            )

    def approach_progress(self, probe: str) -> np.ndarray:
        """Rows [t_s, z_um, I_A] of the approach in progress recorded so far
        (empty when none runs)."""
        return self._progress.rows()

    # ---------------------------------------------------------------- stop
    def emergency_stop(self) -> None:
        """Stop every axis at once (#24). With the link gone it raises (the
        hub latches all the same and says the controller was not reached)."""
        self._call("#24 (stop all)", lambda: self.gcs.StopAll(noraise=True))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.gateway.close()


class PIHub(SECCMHub):
    """A PI piezo controller (E-727 three-axis; E-709 / E-712) as a hub of
    ``PiezoXY`` and ``PiezoZ``."""

    PERIPHERALS = (
        ("PiezoXY", "lateral axes of the PI controller"),
        ("PiezoZ", "Z axis of the PI controller, carrying the pipette"),
    )

    def __init__(self) -> None:
        super().__init__()
        pre = {"is_pre_init": True}
        register(
            self,
            "Connection",
            "TCP",
            "TCP (Ethernet) or Serial (USB virtual COM, RS-232)",
            allowed_values=("TCP", "Serial"),
            **pre,
        )
        register(self, "Host", "192.168.0.10", "the controller's IP address (TCP)", **pre)
        register(self, "TCPPort", 50000, "the controller's TCP port", limits=(1, 65535), **pre)
        register(
            self, "SerialPort", "", "serial port name, e.g. /dev/ttyUSB0 or COM3 (Serial)", **pre
        )
        register(
            self,
            "Baud",
            115200,
            "serial baud rate (Serial)",
            allowed_values=(9600, 19200, 38400, 57600, 115200, 230400, 460800),
            **pre,
        )
        register(self, "AxisX", "1", "the controller's name of the X axis (empty: none)", **pre)
        register(self, "AxisY", "2", "the controller's name of the Y axis (empty: none)", **pre)
        register(self, "AxisZ", "3", "the controller's name of the Z axis (empty: none)", **pre)
        register(
            self, "Timeout_ms", 3000, "how long an answer may take, ms", limits=(50, 60000), **pre
        )
        register(
            self,
            "ApproachCurrentFrom",
            "",
            "label of the potentiostat device (of another hub) whose current stops the "
            "approach of this controller's Z axis (empty: no approach)",
            **pre,
        )
        register(
            self,
            "ApproachSampleRate_Hz",
            10000.0,
            "rate of the current stream watched during the approach, Hz",
            limits=(100.0, 1e6),
            **pre,
        )
        register(
            self,
            "Model",
            "",
            "what the controller says it is (*IDN?)",
            is_read_only=True,
            getter=lambda d: getattr(d.controller, "model", ""),
        )

    def make_controller(self) -> PIController:
        g = self.get_property_value
        ctrl = PIController(
            connection=str(g("Connection")),
            host=str(g("Host")),
            tcp_port=int(float(g("TCPPort"))),
            serial_port=str(g("SerialPort")),
            baud=int(float(g("Baud"))),
            axes={"X": str(g("AxisX")), "Y": str(g("AxisY")), "Z": str(g("AxisZ"))},
            timeout_ms=int(float(g("Timeout_ms"))),
            name=self.get_label(),
        )
        source = str(g("ApproachCurrentFrom")).strip()
        if source:
            rate = float(g("ApproachSampleRate_Hz"))
            ctrl.monitor_factory = lambda: self._current_monitor(source, rate)
        return ctrl

    def _current_monitor(self, label: str, rate_hz: float) -> Any:
        """The current stream of the potentiostat ``label`` (any hub of this core)."""
        for hub in live_hubs():
            if not _same_core(hub, self):
                continue
            for dev in list(hub._peripherals):
                if dev.get_label() == label:
                    factory = getattr(dev.controller, "current_monitor", None)
                    channel = getattr(dev, "channel", None)
                    if factory is None or channel is None:
                        raise RuntimeError(
                            f"{self.get_label()} ApproachCurrentFrom: {label!r} gives no current "
                            "stream (it must be a Potentiostat of an NI-DAQ or PalmSens hub)"
                        )
                    return factory(channel, rate_hz)
        raise RuntimeError(
            f"{self.get_label()} ApproachCurrentFrom: no potentiostat labelled {label!r} is "
            "loaded in this core"
        )
