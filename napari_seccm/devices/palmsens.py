"""PalmSens EmStat Pico / EmStat4 potentiostats through MethodSCRIPT.

``PalmSensHub`` is an SECCM controller hub whose controller,
:class:`MethodScriptController`, speaks PalmSens' MethodSCRIPT over a serial
port (pyserial; ``napari-seccm[palmsens]``). Its one peripheral is the generic
:class:`~.potentiostat.Potentiostat` (channel ``A``)::

    #py pyDevice,EmStat,napari_seccm.devices.palmsens,PalmSensHub
    #py pyDevice,Potentiostat,napari_seccm.devices.palmsens,Potentiostat
    #py Parent,Potentiostat,EmStat
    #py Property,EmStat,Port,/dev/ttyACM0
    Property,Core,Initialize,1
    #py Property,Potentiostat,CurrentRange_A,1e-07
    #py Property,Potentiostat,Filter_Hz,40.0
    #py Property,Potentiostat,SampleRate_Hz,100.0

What is sent (MethodSCRIPT v1.x, as PalmSens documents it): ``t`` (the
firmware version: two lines, ``t<device type><version>#<build>`` and ``R*``),
``Z`` (abort the running script; ``Z!0006`` when none runs) and scripts
(``e``, one command per line, an empty line ending it). Every action is a short
script: ``set_e`` / ``cell_on`` / ``cell_off`` for the potential and the cell
(both stay as set when a script ends), and one measurement loop per segment of
a program: a hold is a ``meas_loop_ca`` at the hold's potential, a ramp a
``meas_loop_lsv`` whose points sit at the middles of the program's samples
(:meth:`Program.sample`), so the trace has exactly the program's samples. A CV
is its sweeps, a staircase its holds, a custom program its segments, one after
the other in one script. Numbers in scripts are integers with an SI prefix
(``500m``, ``3333333n``); numbers in the data packages are 7 hex digits offset
by 2^27 with an SI prefix (``ba7FFFF0Cp``: -244 pA).

Measured on the protocol-level fake (``napari_seccm.fakes.methodscript``) over
a pseudo-terminal: see ``docs/hardware.md``. The real instrument's timing (the
few ms it takes to set up each measurement loop, the fastest stream it keeps up
with) is to be checked on the hardware: the sample-rate caps below are
conservative estimates from the link's speed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model.errors import InstrumentError
from ..model.program import Hold, Program
from ._base import register
from ._hub import SECCMHub
from .potentiostat import Potentiostat

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "ConnectionLost",
    "CurrentMonitor",
    "DeviceTimeout",
    "MethodScriptController",
    "MethodScriptError",
    "PalmSensHub",
    "Potentiostat",
    "decode_package",
    "decode_value",
    "script_number",
]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ codec

#: SI prefixes of MethodSCRIPT numbers (a space: none; ``i``: an integer)
SI_PREFIXES: dict[str, float] = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    " ": 1.0,
    "i": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
#: a data package's value is 7 hex digits minus this offset
OFFSET = 1 << 27
_INT32 = 2**31 - 1


def decode_value(field: str) -> float:
    """One variable's value of a data package: 7 hex digits and an SI prefix
    (``7F85E36u``), or ``     nan``."""
    if field.strip() == "nan":
        return math.nan
    digits, prefix = field[:7], (field[7:8] or " ")
    if len(digits) != 7:
        raise ValueError(f"a data package value needs 7 hex digits and a prefix, got {field!r}")
    try:
        raw = int(digits, 16)
    except ValueError:
        raise ValueError(f"a data package value is not hexadecimal: {field!r}") from None
    if prefix not in SI_PREFIXES:
        raise ValueError(f"unknown SI prefix {prefix!r} in the data package value {field!r}")
    return (raw - OFFSET) * SI_PREFIXES[prefix]


@dataclass(frozen=True)
class Variable:
    """One variable of a data package: its type (``da`` set potential, ``ba``
    current, ...), value in SI units, status bits and current range index."""

    type: str
    value: float
    status: int = 0
    range_index: int | None = None

    @property
    def overload(self) -> bool:
        return bool(self.status & 0x2)


def decode_package(line: str) -> list[Variable]:
    """A data package line (``Pda...;ba...,14,203``) as its variables."""
    line = line.rstrip("\r\n")
    if not line.startswith("P") or len(line) < 2:
        raise ValueError(f"not a MethodSCRIPT data package: {line[:60]!r}")
    out = []
    for part in line[1:].split(";"):
        head, *meta = part.split(",")
        if len(head) < 9:
            raise ValueError(f"a data package variable is too short: {part!r} in {line[:60]!r}")
        status, rng = 0, None
        for m in meta:
            with contextlib.suppress(ValueError):
                if m[:1] == "1" and len(m) == 2:
                    status = int(m[1], 16)
                elif m[:1] == "2" and len(m) == 3:
                    rng = int(m[1:], 16)
        out.append(Variable(head[:2], decode_value(head[2:]), status, rng))
    return out


def script_number(value: float) -> str:
    """``value`` as a MethodSCRIPT number: an integer with an SI prefix, the
    coarsest prefix that writes it exactly (0.5 -> ``500m``); a value no
    prefix writes exactly is rounded at the finest prefix that keeps the
    integer within 32 bits (1/300 -> ``3333333n``)."""
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{value!r} cannot be written in a MethodSCRIPT script")
    if v == 0:
        return "0"
    order = ("M", "k", " ", "m", "u", "n", "p", "f")
    for p in order:
        scaled = v / SI_PREFIXES[p]
        k = round(scaled)
        if k != 0 and abs(k) <= _INT32 and abs(scaled - k) <= 1e-9 * abs(k):
            return f"{k}{p.strip()}"
    for p in reversed(order):
        k = round(v / SI_PREFIXES[p])
        if abs(k) <= _INT32:
            return f"{k}{p.strip()}"
    raise ValueError(f"{value!r} is too large for a MethodSCRIPT number")


#: MethodSCRIPT error codes (the manual's appendix A), in our own words
ERRORS: dict[int, str] = {
    0x0001: "unspecified error",
    0x0002: "invalid variable type",
    0x0003: "command not recognized",
    0x0006: "command not allowed now (e.g. no script is running, or one is)",
    0x0007: "an argument has an unexpected value",
    0x0008: "command too long",
    0x0009: "command timed out",
    0x000C: "no script loaded to run",
    0x000E: "overflow while averaging a measured value",
    0x000F: "invalid potential (outside the instrument's range)",
    0x0010: "a variable became NaN or infinite",
    0x0011: "invalid frequency",
    0x0012: "invalid amplitude",
    0x0014: "cannot measure the open-circuit potential with the cell on",
    0x001B: "this instrument does not support the command (or part of it)",
    0x001C: "potential step smaller than one DAC step",
    0x001F: "this instrument has no licence for the technique",
    0x0021: "PGStat mode not supported",
    0x0023: "command not allowed in this PGStat mode",
    0x0032: "the cell is severely overloaded: the instrument stopped the measurement",
    0x0058: "timing error of a fast measurement (communication too slow?)",
    0x005A: "the instrument cannot keep the requested measurement timing",
    0x0080: "the counter electrode oscillates",
    0x4001: "script command not recognized",
    0x4004: "unexpected character in the script",
    0x4005: "the script is too large for the instrument's memory",
    0x4008: "the command does not take this optional argument",
    0x400B: "measurement loops cannot be nested",
    0x400C: "command not allowed here",
    0x4012: "unexpected script error",
    0x4018: "the script ended unexpectedly (a loop not closed?)",
    0x401A: "command not allowed inside a measurement loop",
    0x401C: "too many variables in one data package",
    0x4020: "script command timed out",
    0x4026: "variable declared twice",
    0x4027: "the cell must be on (cell_on) first",
    0x4028: "the cell must be off (cell_off) first",
    0x4029: "the technique needs at least one step",
    0x402B: "invalid variable name",
    0x402C: "variable name too long",
    0x4032: "the potential cannot change inside a measurement loop",
    0x4200: "the argument may not be negative",
    0x4201: "the argument may not be positive",
    0x4202: "the argument may not be zero",
    0x4203: "the argument must be negative",
    0x4204: "the argument must be positive",
    0x4205: "the argument is outside the range the command allows",
    0x4206: "this instrument cannot use this argument value",
    0x4207: "wrong number type (float / integer) of an argument",
    0x4209: "wrong variable type of an argument",
    0x420A: "one argument too many",
    0x420B: "the argument is a variable that was not declared",
    0x7FFF: "fatal error: the instrument must be reset",
}

_ERROR_RE = re.compile(r"!([0-9A-Fa-f]{4})(?::\s*Line\s+(\d+)(?:,\s*Col\s+(\d+))?)?")


class MethodScriptError(InstrumentError):
    """The instrument answered ``!XXXX``: an error code and, for a script, the line."""

    def __init__(self, code: int, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.line = line


class DeviceTimeout(InstrumentError):
    """The instrument did not answer in time."""


class ConnectionLost(InstrumentError):
    """The serial connection is gone (cable, port, power)."""


def describe_error(code: int) -> str:
    return ERRORS.get(code, "an error code this driver does not know (see the MethodSCRIPT manual)")


# ----------------------------------------------------------------- models


@dataclass(frozen=True)
class Model:
    """What the driver needs to know of one instrument type."""

    name: str
    #: current ranges the Potentiostat may select, A (those above 1 mA are left out:
    #: ``CurrentRange_A`` goes up to 1 mA)
    ranges_A: tuple[float, ...]
    #: potential range in the low-speed PGStat mode (2), V
    e_min_V: float
    e_max_V: float
    #: the widest span of potentials one script may use, V
    window_V: float
    #: the fastest sample rate streamed (one data package per sample), Hz
    max_rate_hz: float


#: the device types of the ``t`` reply (its first 6 characters after the ``t``)
MODELS: dict[str, Model] = {
    # low-speed mode ranges; the link is a UART at 230400 baud: a package of
    # ~30 characters per sample keeps up to ~760 samples/s, 500 Hz leaves margin
    "espico": Model(
        "EmStat Pico",
        (1e-7, 2e-6, 4e-6, 8e-6, 16e-6, 32e-6, 63e-6, 125e-6, 250e-6, 500e-6, 1e-3),
        -1.25,
        2.0,
        2.2,
        500.0,
    ),
    "es4_lr": Model(
        "EmStat4 LR", (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3), -3.0, 3.0, 6.0, 1000.0
    ),
    "es4_hr": Model("EmStat4 HR", (1e-7, 1e-6, 1e-5, 1e-4, 1e-3), -6.0, 6.0, 12.0, 1000.0),
}
MODEL_NAMES = tuple(m.name for m in MODELS.values())
DEFAULT_BAUD = 230400
DEFAULT_TIMEOUT_S = 2.0
#: the fewest samples per second (the Potentiostat's SampleRate_Hz allows 100 and up)
MIN_RATE_HZ = 1.0
#: the most segments of one program (one measurement loop each)
MAX_SEGMENTS = 200
#: the longest continuous current monitor, s (its measurement loop's run time)
MONITOR_RUN_S = 86_400
_POLL_S = 0.02


def parse_version(first: str, second: str) -> tuple[str, str]:
    """(device type, firmware text) of the two-line ``t`` reply."""
    if not first.startswith("t") or not second.rstrip().endswith("*"):
        raise ValueError(f"not a MethodSCRIPT version reply: {first!r} / {second!r}")
    return first[1:7], (first[1:] + " " + second).strip()


# ----------------------------------------------------------- the controller


@dataclass
class _Settings:
    range_A: float
    filter_hz: float
    rate_hz: float


@dataclass
class _Step:
    """One measurement loop of a program's script."""

    kind: str  # "ca" or "lsv"
    n: int
    e0: float
    e1: float
    dt: float
    line: str


class MethodScriptController:
    """An EmStat Pico / EmStat4 behind a serial port, speaking MethodSCRIPT.

    The controller protocol of the SECCM hubs (see
    :class:`~.simulated.SimulatedController`): ``current_ranges_A``,
    ``configure``, ``set_cell``, ``set_potential``, ``read_current``,
    ``run_program``, plus ``current_monitor`` (a continuous CA stream),
    ``cells_off`` / ``emergency_stop``, ``reconnect`` and ``close``.

    One script runs at a time (the instrument runs one); an abort (``Z``) is
    written while another thread reads the running script's output. Every wait
    is bounded by ``timeout_s``: a silent instrument raises
    :class:`DeviceTimeout`, a vanished port :class:`ConnectionLost`, an
    ``!XXXX`` answer :class:`MethodScriptError`.
    """

    #: operations take wall time: the peripherals run them on their workers
    runs_inline = False
    CHANNELS = ("A",)

    def __init__(
        self,
        port: str,
        *,
        baud: int = DEFAULT_BAUD,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        model: str = "auto",
        flow_control: str = "xonxoff",
        serial_factory: Callable[..., Any] | None = None,
    ) -> None:
        if not port:
            raise ValueError(
                "no serial port given: set the hub's Port (e.g. /dev/ttyACM0, COM5) "
                "before Property,Core,Initialize,1"
            )
        if model != "auto" and model not in MODEL_NAMES:
            raise ValueError(f"Model {model!r} is not one of auto, {', '.join(MODEL_NAMES)}")
        self.port = str(port)
        self.baud = int(baud)
        self.timeout_s = float(timeout_s)
        self.model_wanted = model
        self.flow_control = flow_control
        self._factory = serial_factory
        self._ser: Any = None
        self._rx = bytearray()
        self._wlock = threading.Lock()
        self._session = threading.RLock()
        self._lost: str = ""
        self.device_type = ""
        self.firmware = ""
        self.model: Model = MODELS["espico"]
        self._settings: _Settings | None = None
        self._requested: dict[str, tuple[float, float, float]] = {}
        self._cell_on = False
        self._potential = 0.0
        #: what the running script is (for messages), its abort state
        self._running = ""
        self._run_end = 0.0
        self._z_sent = False
        self._external_abort = ""
        self._last_current = math.nan
        self._last_current_t = -math.inf
        self._monitor: CurrentMonitor | None = None
        self._needs_sync = False
        self.connect()

    # ----------------------------------------------------------- the link
    @property
    def connected(self) -> bool:
        return self._ser is not None and not self._lost

    @property
    def connection_error(self) -> str:
        return self._lost

    @property
    def current_ranges_A(self) -> tuple[float, ...]:
        return self.model.ranges_A

    def _open(self) -> Any:
        if self._factory is not None:
            return self._factory(self.port, self.baud, self.timeout_s)
        try:
            import serial
        except ImportError as e:  # pragma: no cover - pyserial is a dependency of the extra
            raise ImportError(
                "the PalmSens hub needs pyserial: pip install 'napari-seccm[palmsens]'"
            ) from e
        kw = {
            "baudrate": self.baud,
            "timeout": _POLL_S,
            "write_timeout": self.timeout_s,
            "xonxoff": self.flow_control == "xonxoff",
            "rtscts": self.flow_control == "rtscts",
        }
        try:
            if "://" in self.port:
                return serial.serial_for_url(self.port, **kw)
            return serial.Serial(self.port, **kw)
        except (serial.SerialException, OSError, ValueError) as e:
            raise ConnectionLost(
                f"cannot open the serial port {self.port!r} for the EmStat: {e} (is it plugged "
                "in and powered, the port name right, and no other program, e.g. PSTrace, "
                "holding it?)"
            ) from e

    def connect(self) -> None:
        """Open the port, end any script left running, check the firmware
        reply, and bring the instrument to a known state (cell off)."""
        self._close_port()
        self._ser = self._open()
        self._rx.clear()
        self._lost = ""
        self._needs_sync = False
        try:
            self._sync()
            self._write("t\n")
            first = self._expect(lambda s: s.startswith("t") or "!" in s, "the version query (t)")
            if "!" in first or not first.startswith("t"):
                raise ConnectionLost(
                    f"the device on {self.port} answered the version query with {first!r}: "
                    "not an EmStat speaking MethodSCRIPT (baud rate right?)"
                )
            second = first if first.rstrip().endswith("*") else self._expect(None, "t")
            dtype, fw = parse_version(first, second)
        except BaseException:
            self._close_port()
            raise
        model = MODELS.get(dtype)
        if model is None:
            self._close_port()
            raise ConnectionLost(
                f"the instrument on {self.port} is a {dtype!r} (firmware {fw!r}); this driver "
                f"knows {', '.join(f'{m.name} ({k})' for k, m in MODELS.items())}"
            )
        if self.model_wanted != "auto" and model.name != self.model_wanted:
            self._close_port()
            raise ConnectionLost(
                f"the config says Model = {self.model_wanted} but the instrument on {self.port} "
                f"is an {model.name} (firmware {fw!r}); correct Model (or set it to auto)"
            )
        self.device_type, self.firmware, self.model = dtype, fw, model
        if self._settings is None:
            r = model.ranges_A[0]
            self._settings = _Settings(r, min(40.0, model.max_rate_hz / 4), 100.0)
        self._cell_on = False
        self._run_script(
            ["set_pgstat_chan 0", "set_pgstat_mode 2", "cell_off"], "the initial cell off"
        )
        log.info("connected to %s on %s (firmware %s)", model.name, self.port, fw)

    def reconnect(self) -> None:
        """Connect again (after a lost connection): a script still running on
        the instrument is aborted and the cell switched off."""
        with self._session:
            self.connect()

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def close(self) -> None:
        """End the monitor and any script, switch the cell off, close the port."""
        if self._ser is None:
            return
        if self.connected and (self._cell_on or self._running):
            try:
                self.cells_off()
            except Exception as e:
                log.warning("closing the EmStat on %s: %s", self.port, e)
        self._close_port()

    def _lose(self, e: BaseException, what: str) -> ConnectionLost:
        """Mark the connection lost; the error to raise, saying what the
        instrument may still be doing."""
        doing = self._state_text()
        msg = (
            f"the connection to the EmStat on {self.port} was lost during {what} ({e}). "
            f"{doing} Reconnect once the cable/port is back: set the hub's Connection to "
            "Connected (same port) or reload the config; connecting aborts a script still "
            "running and switches the cell off"
        )
        self._lost = msg
        self._close_port()
        log.error(msg)
        return ConnectionLost(msg)

    def _state_text(self) -> str:
        if self._running:
            left = max(0.0, self._run_end - time.monotonic())
            end = "its end" if not math.isfinite(left) else f"its end (in about {left:.1f} s)"
            return (
                f"The EmStat may still be running {self._running}, applying E = "
                f"{self._potential:.4g} V until {end}; its cell then stays "
                f"{'on' if self._cell_on else 'off'} at the last potential."
            )
        if self._cell_on:
            return f"The EmStat's cell stays on at E = {self._potential:.4g} V."
        return "The EmStat's cell was off."

    def _check_link(self) -> None:
        if self._lost:
            raise ConnectionLost(self._lost)
        if self._ser is None:
            raise ConnectionLost(f"the EmStat on {self.port} is not connected (closed)")

    def _write(self, text: str) -> None:
        self._check_link()
        try:
            with self._wlock:
                self._ser.write(text.encode("ascii"))
                self._ser.flush()
        except Exception as e:
            if type(e).__name__ == "SerialTimeoutException":
                raise DeviceTimeout(
                    f"the EmStat on {self.port} did not take a command within "
                    f"{self.timeout_s:g} s (flow control stuck?)"
                ) from e
            raise self._lose(e, self._running or "a command") from e

    def _readline(self, wait_s: float) -> str | None:
        """One line without its newline, or None when none came within ``wait_s``."""
        self._check_link()
        t_end = time.monotonic() + wait_s
        while True:
            i = self._rx.find(b"\n")
            if i >= 0:
                raw = bytes(self._rx[:i])
                del self._rx[: i + 1]
                # XON / XOFF characters of the Pico's flow control are not data
                return raw.replace(b"\x11", b"").replace(b"\x13", b"").decode("ascii", "replace")
            if time.monotonic() >= t_end:
                return None
            try:
                chunk = self._ser.read(max(1, self._ser.in_waiting))
            except Exception as e:
                raise self._lose(e, self._running or "a reply") from e
            if chunk:
                self._rx += chunk

    def _expect(self, accept: Callable[[str], bool] | None, what: str) -> str:
        """The next line (that ``accept`` takes); DeviceTimeout after timeout_s."""
        t_end = time.monotonic() + self.timeout_s
        while True:
            line = self._readline(max(0.0, t_end - time.monotonic()))
            if line is None:
                raise DeviceTimeout(
                    f"the EmStat on {self.port} did not answer {what} within "
                    f"{self.timeout_s:g} s (unpowered, hung, or another baud rate?)"
                )
            if accept is None or accept(line):
                return line

    def _sync(self) -> None:
        """End a script the instrument may still be running (left over from
        another session) and drop its output."""
        self._write("\nZ\n")
        reply = self._expect(lambda s: s.startswith("Z"), "the abort (Z)")
        if reply.startswith("Z!"):
            time.sleep(0.1)  # no script ran; the instrument ignores commands briefly after an error
            self._rx.clear()
            with contextlib.suppress(Exception):
                self._ser.reset_input_buffer()
            return
        self._drain_to_end(self.timeout_s, "the abort of a script left running")

    def _drain_to_end(self, wait_s: float, what: str) -> None:
        t_end = time.monotonic() + wait_s
        while True:
            line = self._readline(max(0.0, t_end - time.monotonic()))
            if line is None:
                raise DeviceTimeout(
                    f"the EmStat on {self.port} did not end its script within {wait_s:g} s "
                    f"after {what}. {self._state_text()}"
                )
            if line == "":
                return
            if _ERROR_RE.search(line):
                self._after_error()
                return

    def _after_error(self) -> None:
        """After an error the instrument may send one more empty line and
        ignores commands for 50-100 ms: drop both."""
        t_end = time.monotonic() + 0.15
        while time.monotonic() < t_end:
            line = self._readline(t_end - time.monotonic())
            if line is None:
                break

    # --------------------------------------------------------- scripts
    def _settings_lines(self, e_lo: float, e_hi: float) -> list[str]:
        s = self._settings
        assert s is not None
        r = script_number(s.range_A)
        return [
            f"set_max_bandwidth {script_number(s.filter_hz)}",
            f"set_range_minmax da {script_number(e_lo)} {script_number(e_hi)}",
            f"set_range ba {r}",
            f"set_autoranging ba {r} {r}",
        ]

    def _error(
        self, line: str, script: Sequence[str], what: str, *, refused: bool = False
    ) -> MethodScriptError:
        m = _ERROR_RE.search(line)
        assert m is not None
        code = int(m.group(1), 16)
        ln = int(m.group(2)) if m.group(2) else None
        where = ""
        if ln is not None:
            # lines are counted from the first after 'e'
            text = script[ln - 1] if 1 <= ln <= len(script) else ""
            where = f" at line {ln} of the script" + (f" ({text.strip()!r})" if text else "")
        if refused:
            state = "The EmStat refused the script: nothing of it ran."
        else:
            self._running = ""  # the script has ended
            state = self._state_text()
        return MethodScriptError(
            code,
            f"EmStat error !{code:04X} ({describe_error(code)}){where} during {what}. {state}",
            ln,
        )

    def _run_script(
        self,
        body: Sequence[str],
        what: str,
        *,
        on_package: Callable[[list[Variable]], None] | None = None,
        abort: threading.Event | None = None,
        gap_s: float = 0.0,
        duration_s: float = 0.0,
    ) -> bool:
        """Send ``e`` + ``body`` + an empty line and read its output to the end.

        ``gap_s``: the longest expected time between two output lines (a
        sample interval); silence longer than that plus ``timeout_s`` is a
        :class:`DeviceTimeout`. ``abort``: when set, ``Z`` is sent and the
        output drained (the instrument ends the loop and the script). Returns
        True if the script ran to its end, False if it was aborted (by
        ``abort`` or by another thread's :meth:`abort_script`).
        """
        script = ["e", *body]
        with self._session:
            self._check_link()
            if self._needs_sync:
                self._sync()
                self._needs_sync = False
            self._running, self._z_sent, self._external_abort = what, False, ""
            self._run_end = time.monotonic() + duration_s
            try:
                self._write("\n".join(script) + "\n\n")
                first = self._expect(
                    lambda s: s.startswith("e") or "!" in s, f"the script of {what}"
                )
                # an 'e!XXXX' echo (or '!XXXX: Line L, Col C') is a script the instrument refused
                if _ERROR_RE.search(first):
                    self._after_error()
                    raise self._error(first, body, what, refused=True)
                quiet_s = self.timeout_s + 2 * gap_s
                last = time.monotonic()
                z_at = math.inf
                while True:
                    if abort is not None and abort.is_set() and not self._z_sent:
                        self.abort_script()
                    if self._z_sent and z_at == math.inf:
                        z_at = time.monotonic()
                    line = self._readline(_POLL_S)
                    now = time.monotonic()
                    if line is None:
                        if now - z_at > self.timeout_s:
                            raise DeviceTimeout(
                                f"the EmStat on {self.port} did not end {what} within "
                                f"{self.timeout_s:g} s of the abort (Z). {self._state_text()}"
                            )
                        if now - last > quiet_s:
                            raise DeviceTimeout(
                                f"the EmStat on {self.port} sent nothing for {now - last:.1f} s "
                                f"during {what} (a sample was due every {gap_s * 1e3:.3g} ms): "
                                f"it stopped answering. {self._state_text()}"
                            )
                        continue
                    last = now
                    if line == "":
                        return not (self._z_sent or self._external_abort)
                    c = line[0]
                    if c == "P":
                        try:
                            pkg = decode_package(line)
                        except ValueError as e:
                            raise RuntimeError(
                                f"the EmStat on {self.port} sent a garbled data package during "
                                f"{what}: {e}"
                            ) from None
                        for v in pkg:
                            if v.type == "da":
                                self._potential = v.value
                            elif v.type == "ba":
                                self._last_current, self._last_current_t = v.value, now
                        if on_package is not None:
                            on_package(pkg)
                    elif _ERROR_RE.search(line):
                        self._after_error()
                        raise self._error(line, body, what)
                    # 'M....' loop start, '*' loop end, 'Z' abort echo, 'T' text: nothing to do
            except BaseException as e:
                self._rx.clear()
                if not isinstance(e, (MethodScriptError, ConnectionLost)):
                    # the instrument may still be running this script: end it first next time
                    self._needs_sync = True
                raise
            finally:
                self._running = ""

    def abort_script(self, reason: str = "") -> bool:
        """Send ``Z`` to end the running script (from any thread); False when
        none runs. Takes no session lock: reaches a script another thread reads."""
        if not self._running:
            return False
        if reason:
            self._external_abort = reason
        if not self._z_sent:
            self._z_sent = True
            self._write("Z\n")
        return True

    # ------------------------------------------------ controller protocol
    def _check_channel(self, channel: str) -> None:
        if channel not in self.CHANNELS:
            raise ValueError(
                f"the {self.model.name} has one channel, 'A'; channel {channel!r} does not exist"
            )

    def check_potential(self, volts: float, what: str = "potential") -> None:
        m = self.model
        if not m.e_min_V <= volts <= m.e_max_V:
            limit = f"minimum {m.e_min_V:g} V" if volts < m.e_min_V else f"maximum {m.e_max_V:g} V"
            raise ValueError(
                f"{what} {volts:g} V is outside the {m.name}'s range [{m.e_min_V:g}, "
                f"{m.e_max_V:g}] V ({limit}); nothing was changed"
            )

    def _check_range(self, range_A: float) -> float:
        m = self.model
        match = [r for r in m.ranges_A if abs(range_A / r - 1) < 1e-6]
        if not match:
            raise ValueError(
                f"CurrentRange_A {range_A:g} A is not a current range of the {m.name}: choose "
                f"one of {', '.join(f'{r:g}' for r in m.ranges_A)} A (the smallest is "
                f"{m.ranges_A[0]:g} A)"
            )
        return match[0]

    def _check_rate(self, rate_hz: float) -> None:
        m = self.model
        if not MIN_RATE_HZ <= rate_hz <= m.max_rate_hz:
            raise ValueError(
                f"SampleRate_Hz {rate_hz:g} Hz is above the {m.name}'s maximum of "
                f"{m.max_rate_hz:g} Hz (one data package per sample over the serial link); "
                "set Filter_Hz to at most half the new rate first"
            )

    def configure(
        self, channel: str, *, range_A: float, filter_hz: float, sample_rate_hz: float
    ) -> None:
        """Current range, bandwidth (``set_max_bandwidth``) and sample rate of
        the next scripts.

        The Potentiostat sends all three whenever one changes, and its
        defaults (1e-8 A, 1 kHz, 5 kHz) are not an EmStat's: the values that
        changed since the last call are checked (a refused one raises, naming
        the value and the limit, and nothing changes), the others may stay
        unusable until they are set; a call that changes nothing (the
        Potentiostat re-asserts its settings before each program) checks them
        all, so a program is refused at ``Acquire = Run`` until CurrentRange_A,
        Filter_Hz and SampleRate_Hz suit the instrument. Meanwhile the
        instrument uses its own (its smallest range, 40 Hz, 100 Hz).
        """
        self._check_channel(channel)
        new = (float(range_A), float(filter_hz), float(sample_rate_hz))
        old = self._requested.get(channel)
        checks = (self._check_range, lambda _v: None, self._check_rate)
        if old is None:  # the Potentiostat's first push, at its initialization: lenient
            changed = []
        elif old == new:
            changed = [0, 1, 2]
        else:
            changed = [j for j in range(3) if new[j] != old[j]]
        for j in changed:
            checks[j](new[j])
        self._requested[channel] = new
        s = self._settings
        assert s is not None
        r, f, fs = s.range_A, s.filter_hz, s.rate_hz
        with contextlib.suppress(ValueError):
            r = self._check_range(new[0])
        with contextlib.suppress(ValueError):
            self._check_rate(new[2])
            fs = new[2]
        if 0 < new[1] <= fs / 2:
            f = new[1]
        if old is None and (r, f, fs) != new:
            log.warning(
                "the Potentiostat's %g A, %g Hz filter, %g Hz sampling do not suit the %s: it "
                "uses %g A, %g Hz, %g Hz until CurrentRange_A, Filter_Hz and SampleRate_Hz are "
                "set (in the config, after initialization); a program is refused until then",
                *new,
                self.model.name,
                r,
                f,
                fs,
            )
        self._settings = _Settings(r, f, fs)

    def _refuse_if_streaming(self, what: str) -> None:
        if self._monitor is not None and self._monitor.active:
            raise RuntimeError(
                f"{what} refused: the current monitor of the EmStat is running "
                "(an approach watches it); close it first"
            )
        if self._running:
            raise RuntimeError(f"{what} refused: the EmStat is running {self._running}")

    def set_cell(self, channel: str, on: bool) -> None:
        self._check_channel(channel)
        if not on:
            self.cells_off("switching the cell off")
            return
        self._refuse_if_streaming("switching the cell on")
        e = self._potential
        self._run_script(
            [*self._settings_lines(e, e), f"set_e {script_number(e)}", "cell_on"],
            "switching the cell on",
        )
        self._cell_on = True

    def set_potential(self, channel: str, volts: float) -> None:
        self._check_channel(channel)
        v = float(volts)
        self.check_potential(v, "Potential_V")
        self._refuse_if_streaming(f"setting the potential to {v:g} V")
        self._run_script(
            [*self._settings_lines(v, v), f"set_e {script_number(v)}"],
            f"setting the potential to {v:g} V",
        )
        self._potential = v

    def read_current(self, channel: str) -> float:
        """One sample of the current at the present potential, A (with the
        cell off no current flows: 0). While a program or the monitor runs,
        its latest sample."""
        self._check_channel(channel)
        if self._running or (self._monitor is not None and self._monitor.active):
            return float(self._last_current)
        if not self._cell_on:
            return 0.0
        s = self._settings
        assert s is not None
        dt = 1.0 / s.rate_hz
        # the filter settles in ~5 time constants (0.8 / bandwidth): the last
        # sample of that many is the reading
        n = max(1, math.ceil(0.8 * s.rate_hz / s.filter_hz))
        got: list[float] = []
        e = self._potential
        body = [
            "var p",
            "var c",
            *self._settings_lines(e, e),
            *_loop(
                f"meas_loop_ca p c {script_number(e)} {script_number(dt)} "
                f"{script_number((n + 0.5) * dt)}"
            ),
        ]
        self._run_script(
            body,
            "a current reading",
            on_package=lambda pkg: got.extend(v.value for v in pkg if v.type == "ba"),
            gap_s=dt,
            duration_s=n * dt,
        )
        if not got:
            raise RuntimeError(f"the EmStat on {self.port} sent no current sample")
        return float(got[-1])

    # ---------------------------------------------------------- programs
    def program_steps(self, program: Program, rate_hz: float) -> list[_Step]:
        """The measurement loops of ``program`` at ``rate_hz``: one per
        segment with samples, each giving exactly the program's samples."""
        counts = program.sample_counts(rate_hz)
        if len(program.segments) > MAX_SEGMENTS:
            raise ValueError(
                f"the program has {len(program.segments)} segments; the EmStat runs at most "
                f"{MAX_SEGMENTS} in one script (one measurement loop each)"
            )
        lo, hi = program.potential_limits()
        self.check_potential(lo, "the program's lowest potential")
        self.check_potential(hi, "the program's highest potential")
        if hi - lo > self.model.window_V:
            raise ValueError(
                f"the program spans {hi - lo:g} V ({lo:g} to {hi:g} V); the {self.model.name} "
                f"applies at most a {self.model.window_V:g} V window in one script"
            )
        steps = []
        dt = 1.0 / rate_hz
        for seg, n in zip(program.segments, counts, strict=True):
            if n <= 0:
                continue
            if isinstance(seg, Hold) or n == 1:
                e = seg.start_V if isinstance(seg, Hold) else (seg.start_V + seg.end_V) / 2
                line = (
                    f"meas_loop_ca p c {script_number(e)} {script_number(dt)} "
                    f"{script_number((n + 0.5) * dt)}"
                )
                steps.append(_Step("ca", n, e, e, dt, line))
                continue
            e0, e1, t = seg.start_V, seg.end_V, seg.duration_s
            step = (e1 - e0) / n
            # the points at the middles of the samples; the end a quarter step
            # past the last one, so that a count rounded either way gives n
            first, end = e0 + step / 2, e1 - step / 4
            rate = abs(e1 - e0) / t
            line = (
                f"meas_loop_lsv p c {script_number(first)} {script_number(end)} "
                f"{script_number(abs(step))} {script_number(rate)}"
            )
            steps.append(_Step("lsv", n, e0, e1, abs(step) / rate, line))
        return steps

    def run_program(self, channel: str, program: Program, abort: threading.Event) -> np.ndarray:
        """Run ``program`` hardware-timed; rows [t_s, E_V, I_A]. ``abort``
        ends it early (the samples so far are returned)."""
        self._check_channel(channel)
        self._refuse_if_streaming("running a program")
        if not self._cell_on:
            raise RuntimeError(
                f"the {self.model.name}'s cell is off: it measures only with the cell on "
                "(MethodSCRIPT !4027); set Cell = On first"
            )
        s = self._settings
        assert s is not None
        steps = self.program_steps(program, s.rate_hz)
        n_total = sum(st.n for st in steps)
        lo, hi = program.potential_limits()
        body = ["var p", "var c", *self._settings_lines(lo, hi)]
        for st in steps:
            body.extend(_loop(st.line))
        e_out = np.empty(n_total)
        i_out = np.empty(n_total)
        k = 0

        def take(pkg: list[Variable]) -> None:
            nonlocal k
            if k >= n_total:
                return  # a point more than planned (the instrument's rounding): not recorded
            e = i = math.nan
            for v in pkg:
                if v.type == "da":
                    e = v.value
                elif v.type == "ba":
                    i = v.value
            e_out[k], i_out[k] = e, i
            k += 1

        what = f"a program of {n_total} samples ({program.duration_s:g} s)"
        gap = max((st.dt for st in steps), default=0.0)
        try:
            complete = self._run_script(
                body,
                what,
                on_package=take,
                abort=abort,
                gap_s=gap,
                duration_s=program.duration_s,
            )
        except ConnectionLost as e:
            raise ConnectionLost(f"{e} ({k} of {n_total} samples had arrived)") from None
        reason = self._external_abort
        trace = np.vstack((np.arange(k) / s.rate_hz, e_out[:k], i_out[:k]))
        if not complete and not abort.is_set() and reason:
            # ended by the emergency stop / cells_off from another thread: the
            # device's abort follows at once; keep the samples if it comes
            if abort.wait(2.0):
                return trace
            raise RuntimeError(f"{what} was stopped by {reason} after {k} samples")
        if complete and k < n_total:
            raise RuntimeError(f"the EmStat ended {what} after {k} samples instead of {n_total}")
        return trace

    # ------------------------------------------------- the current monitor
    def current_monitor(self, channel: str, rate_hz: float) -> CurrentMonitor:
        """Start a continuous chronoamperometric stream at the present
        potential (a MethodSCRIPT measurement loop); read it with
        :meth:`CurrentMonitor.read`, end it with ``close()``. A rate above the
        instrument's fastest runs at the fastest (``sample_rate_hz`` says which)."""
        self._check_channel(channel)
        self._refuse_if_streaming("starting the current monitor")
        if not self._cell_on:
            raise RuntimeError(
                f"the {self.model.name}'s cell is off: the current monitor needs the cell on"
            )
        rate = float(rate_hz)
        if not rate >= MIN_RATE_HZ:
            raise ValueError(
                f"the current monitor's rate {rate:g} Hz is below the minimum {MIN_RATE_HZ:g} Hz"
            )
        if rate > self.model.max_rate_hz:
            # the stream cannot be faster: it runs at the instrument's fastest
            # and says so (its sample_rate_hz), as a DAQ would round its clock
            log.warning(
                "the current monitor runs at the %s's maximum %g Hz, not %g Hz",
                self.model.name,
                self.model.max_rate_hz,
                rate,
            )
            rate = self.model.max_rate_hz
        mon = CurrentMonitor(self, rate)
        self._monitor = mon
        mon._start()
        return mon

    # ------------------------------------------------------------- stops
    def cells_off(self, reason: str = "the cells-off request") -> None:
        """Abort any script and switch the cell off (bounded waits: never hangs)."""
        self._check_link()
        if self._running:
            self.abort_script(reason)
        if not self._session.acquire(timeout=2 * self.timeout_s + 1.0):
            raise DeviceTimeout(
                f"the EmStat on {self.port} did not end {self._running or 'its script'} "
                f"after the abort: its cell may still be on at E = {self._potential:.4g} V"
            )
        try:
            if self._monitor is not None:
                self._monitor.active = False
            self._run_script(["cell_off"], "switching the cell off")
            self._cell_on = False
        finally:
            self._session.release()

    def emergency_stop(self) -> None:
        """Abort the running script at once and switch the cell off."""
        self.cells_off("the emergency stop")


def _loop(head: str) -> list[str]:
    """A measurement loop sending each point's set potential and current."""
    return [head, "pck_start", "pck_add p", "pck_add c", "pck_end", "endloop"]


class CurrentMonitor:
    """A continuous CA stream of the EmStat, read from another thread.

    ``read(timeout_s)``: rows [t_s, I_A] of the samples since the last read
    (t on the ``time.monotonic()`` clock, s: the hardware sample times, placed
    by the earliest arrival seen, so transport delays do not add jitter).
    Blocks until at least one new sample or ``timeout_s``; raises the
    stream's error if it failed. ``close()`` ends the stream (also as a
    context manager).
    """

    def __init__(self, ctrl: MethodScriptController, rate_hz: float) -> None:
        self._ctrl = ctrl
        self.sample_rate_hz = rate_hz
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._buf: list[float] = []
        self._k0 = 0  # index of the first buffered sample
        self._n = 0
        self._t0 = math.inf  # monotonic time of sample 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.active = True

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="EmStat monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ctrl = self._ctrl
        dt = 1.0 / self.sample_rate_hz
        e = ctrl._potential

        def take(pkg: list[Variable]) -> None:
            now = time.monotonic()
            for v in pkg:
                if v.type == "ba":
                    with self._cond:
                        self._n += 1
                        self._t0 = min(self._t0, now - self._n * dt)
                        self._buf.append(v.value)
                        self._cond.notify_all()

        body = [
            "var p",
            "var c",
            *ctrl._settings_lines(e, e),
            *_loop(
                f"meas_loop_ca p c {script_number(e)} {script_number(dt)} "
                f"{script_number(MONITOR_RUN_S)}"
            ),
        ]
        try:
            ctrl._run_script(
                body,
                f"the current monitor at {self.sample_rate_hz:g} Hz",
                on_package=take,
                abort=self._stop,
                gap_s=dt,
                duration_s=MONITOR_RUN_S,
            )
            if not self._stop.is_set():
                why = ctrl._external_abort or "the EmStat itself"
                raise RuntimeError(f"the current monitor was ended by {why}")
        except BaseException as err:
            if not self._stop.is_set():
                self._error = err
        finally:
            self.active = False
            with self._cond:
                self._cond.notify_all()

    def read(self, timeout_s: float = 0.1) -> np.ndarray:
        with self._cond:
            if not self._buf and self.active:
                self._cond.wait(timeout_s)
            if not self._buf and self._error is not None:
                raise self._error
            vals, k0 = self._buf, self._k0
            self._buf = []
            self._k0 += len(vals)
            t0 = self._t0
        dt = 1.0 / self.sample_rate_hz
        t = t0 + (np.arange(k0, k0 + len(vals)) + 1) * dt
        return np.vstack((t, np.asarray(vals, dtype=float)))

    def close(self) -> None:
        self._stop.set()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(2 * self._ctrl.timeout_s + 1.0)
        self.active = False
        if self._ctrl._monitor is self:
            self._ctrl._monitor = None

    def __enter__(self) -> CurrentMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:  # pragma: no cover - convenience
        while self.active:
            yield self.read()


# ------------------------------------------------------------------ the hub


class PalmSensHub(SECCMHub):
    """SECCM controller: a PalmSens EmStat Pico / EmStat4 through MethodSCRIPT."""

    PERIPHERALS = (("Potentiostat", "EmStat potentiostat (channel A), through MethodSCRIPT"),)

    def __init__(self) -> None:
        super().__init__()
        register(
            self,
            "Port",
            "",
            "serial port of the EmStat (/dev/ttyACM0, COM5; or a pyserial URL such as "
            "socket://host:port)",
            is_pre_init=True,
        )
        register(
            self,
            "Baud",
            DEFAULT_BAUD,
            "baud rate of the serial link (230400 for the EmStat Pico; the EmStat4's USB "
            "port ignores it)",
            is_pre_init=True,
            limits=(1200, 4_000_000),
        )
        register(
            self,
            "FlowControl",
            "xonxoff",
            "flow control of the serial link: xonxoff (EmStat Pico UART), rtscts, none",
            is_pre_init=True,
            allowed_values=("xonxoff", "rtscts", "none"),
        )
        register(
            self,
            "Timeout_s",
            DEFAULT_TIMEOUT_S,
            "how long to wait for an answer beyond the expected sample interval before "
            "reporting the EmStat as unresponsive, s",
            is_pre_init=True,
            limits=(0.05, 60.0),
        )
        register(
            self,
            "Model",
            "auto",
            "the instrument: auto (from its firmware reply), or the one it must be",
            is_pre_init=True,
            allowed_values=("auto", *MODEL_NAMES),
        )
        register(
            self,
            "Firmware",
            "",
            "the instrument's firmware reply to the version query (t)",
            is_read_only=True,
            getter=lambda d: getattr(d.controller, "firmware", ""),
        )
        register(
            self,
            "Connection",
            "Connected",
            "Connected or Lost (the serial link dropped); set to Connected to reconnect "
            "(aborts a script still running and switches the cell off)",
            allowed_values=("Connected", "Lost"),
            getter=lambda d: "Connected" if d.controller and d.controller.connected else "Lost",
            setter=lambda d, v: d._reconnect() if v == "Connected" else None,
        )
        register(
            self,
            "Connection_Error",
            "",
            "why the connection was lost (empty while connected)",
            is_read_only=True,
            getter=lambda d: d.controller.connection_error if d.controller else "",
        )

    def _reconnect(self) -> None:
        ctrl = self.controller
        if ctrl is not None and not ctrl.connected:
            ctrl.reconnect()

    def make_controller(self) -> MethodScriptController:
        try:
            import serial  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "the PalmSens hub needs pyserial: pip install 'napari-seccm[palmsens]'"
            ) from e
        return MethodScriptController(
            str(self.get_property_value("Port")),
            baud=int(self.get_property_value("Baud")),
            timeout_s=float(self.get_property_value("Timeout_s")),
            model=str(self.get_property_value("Model")),
            flow_control=str(self.get_property_value("FlowControl")),
        )
