"""A fake PalmSens EmStat speaking MethodSCRIPT over a pseudo-terminal.

:class:`FakeEmStat` stands where an EmStat Pico (or an EmStat4) is plugged in:
a client opens :attr:`FakeEmStat.port` (a pty's slave, e.g. ``/dev/pts/7``;
or ``socket://127.0.0.1:N`` with ``start(tcp=True)``) with pyserial,
unmodified, and talks MethodSCRIPT to it, as PalmSens documents
the protocol (MethodSCRIPT manual v1.x and the instruments' communication
protocols). Written from the documents, independently of the driver in
``napari_seccm.devices.palmsens``, so that the two do not share a mistake.

What it answers:

- ``t``: the firmware version, two lines (``tespico1304#Oct 22 2021 14:38:26``,
  ``R*``); ``i``: a serial number; ``v``: the MethodSCRIPT version;
- ``e`` + a script + an empty line: checks the script as it is loaded (an
  unknown command ``e!4001: Line L, Col 1``, an undeclared variable ``!420B``,
  a malformed number ``!4004``, nested or unclosed measurement loops
  ``!400B`` / ``!4018``), answers ``e`` and runs it in wall time: ``set_e``,
  ``cell_on`` / ``cell_off``, ``set_range ba`` (the amplifier's range),
  ``set_max_bandwidth`` (its filter), ``set_range_minmax``,
  ``set_autoranging``, ``set_pgstat_chan`` / ``_mode``, and the measurement
  loops ``meas_loop_ca`` and ``meas_loop_lsv`` (``M0007`` / ``M0000``, one data
  package per point at the loop's interval, ``*`` at the end) with
  ``pck_start`` / ``pck_add`` / ``pck_end``; ``on_finished:`` runs at the end
  and after an abort, not after an error. The cell's current is the
  :class:`~.world.FakeWorld`'s (probe ``A``), sampled as the points fall due.
  A measurement loop with the cell off is ``!4027``, a potential outside the
  model's range ``!000F``, at run time (``!XXXX: Line L``, no empty line after);
- ``Z``: aborts the running script (``Z`` in its output, the loop ends with
  ``*``, ``on_finished:`` runs, an empty line ends it); ``Z!0006`` when none runs;
- anything else: ``<first character>!0003``.

Fault knobs for tests: :meth:`inject_error` (a device error after some data
packages of the next measurement loop), :attr:`unresponsive` (stops
answering; input is swallowed), :meth:`drop` (the pty closes: a dropped
connection), :attr:`abort_delay_s` (a slow abort).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import socket
import threading
import time
import tty
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .world import FakeWorld

__all__ = ["FakeEmStat", "encode_value", "parse_number"]

_PREFIX = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_OFFSET = 0x8000000
_MAX = 0x7FFFFFF
_NUMBER = re.compile(r"([+-]?\d+)([afpnumkMGTPE]?)\Z")
_INTEGER = re.compile(r"([+-]?\d+)i\Z")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

#: (first 6 characters of the version reply, model, range literals, E range V)
DEVICES = {
    "espico": (
        "tespico1304#Oct 22 2021 14:38:26",
        ("100n", "2u", "4u", "8u", "16u", "32u", "63u", "125u", "250u", "500u", "1m", "5m"),
        (-1.25, 2.0),
    ),
    "es4_lr": (
        "tes4_lr1000#Jun  7 2021 16:51:38",
        ("1n", "10n", "100n", "1u", "10u", "100u", "1m", "10m"),
        (-3.0, 3.0),
    ),
    "es4_hr": (
        "tes4_hr1100#Jan 28 2022 11:04:43",
        ("100n", "1u", "10u", "100u", "1m", "10m", "100m"),
        (-6.0, 6.0),
    ),
}


def encode_value(value: float) -> str:
    """A data package value: 7 hex digits (offset 2^27) and the finest SI
    prefix that holds it (``     nan`` for a NaN)."""
    if not math.isfinite(value):
        return "     nan"
    if value == 0:
        return f"{_OFFSET:07X} "
    for p in ("a", "f", "p", "n", "u", "m", "", "k", "M", "G", "T", "P", "E"):
        k = round(value / _PREFIX[p])
        if abs(k) <= _MAX:
            return f"{k + _OFFSET:07X}{p or ' '}"
    return "     nan"


def parse_number(text: str) -> float:
    """A number of a script: an integer with an optional SI prefix (``500m``),
    or an integer with ``i``; a ValueError otherwise (no decimal point)."""
    m = _INTEGER.match(text)
    if m:
        return float(int(m.group(1)))
    m = _NUMBER.match(text)
    if m is None:
        raise ValueError(text)
    return int(m.group(1)) * _PREFIX[m.group(2)]


class _ScriptError(Exception):
    def __init__(self, code: int, line: int, col: int | None = None) -> None:
        super().__init__(code)
        self.code, self.line, self.col = code, line, col

    def text(self) -> str:
        where = f": Line {self.line}" + (f", Col {self.col}" if self.col is not None else "")
        return f"!{self.code:04X}{where}"


@dataclass
class _Cmd:
    line: int  # 1-based line of the script
    name: str
    args: list[str]
    body: list[_Cmd] = field(default_factory=list)  # a measurement loop's commands


# command -> number of arguments (None: checked by the command)
_ARGS = {
    "var": 1,
    "set_pgstat_chan": 1,
    "set_pgstat_mode": 1,
    "set_max_bandwidth": 1,
    "set_range_minmax": 3,
    "set_range": 2,
    "set_autoranging": 3,
    "set_e": 1,
    "cell_on": 0,
    "cell_off": 0,
    "meas_loop_ca": 5,
    "meas_loop_lsv": 6,
    "pck_start": 0,
    "pck_add": 1,
    "pck_end": 0,
    "endloop": 0,
    "on_finished:": 0,
}
_LOOPS = {"meas_loop_ca": "M0007", "meas_loop_lsv": "M0000"}


class FakeEmStat:
    """A fake EmStat on a pseudo-terminal (see the module's docstring)."""

    def __init__(
        self,
        world: FakeWorld | None = None,
        *,
        device_type: str = "espico",
        channel: str = "A",
        serial_number: str = "ES-FAKE-0001",
    ) -> None:
        if device_type not in DEVICES:
            raise ValueError(f"device_type {device_type!r}: one of {sorted(DEVICES)}")
        self.world = world if world is not None else FakeWorld()
        self.device_type = device_type
        self.channel = channel
        self.serial_number = serial_number
        self.version, self.ranges, self.e_range = DEVICES[device_type]
        self.port = ""
        #: stop answering (a hung instrument): input swallowed, nothing sent
        self.unresponsive = False
        #: wall time between receiving Z and ending the loop, s
        self.abort_delay_s = 0.0
        #: the scripts received (lines, without the 'e'), oldest first
        self.scripts: list[list[str]] = []
        #: every line received outside scripts
        self.commands: list[str] = []
        #: the points of the last script run: rows [E_V, I_A]
        self.last_points = np.empty((2, 0))
        self._inject: tuple[int, int] | None = None
        self._master = self._slave = -1
        self._server: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._rx = bytearray()
        self._wlock = threading.Lock()
        self._abort = threading.Event()
        self._script: list[str] | None = None  # being received
        self._runner: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()
        self._busy = False

    # ------------------------------------------------------------ life
    def start(self, *, tcp: bool = False) -> FakeEmStat:
        """Serve on a new pseudo-terminal (:attr:`port` is its path), or with
        ``tcp`` on a local TCP port (:attr:`port` is ``socket://127.0.0.1:N``,
        a pyserial URL; a client may connect again after :meth:`drop`)."""
        self._closed.clear()
        if tcp:
            self._server = socket.create_server(("127.0.0.1", 0))
            self.port = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
            target = self._serve_tcp
        else:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.port = os.ttyname(self._slave)
            target = self._read_loop
        self._reader = threading.Thread(target=target, name="FakeEmStat", daemon=True)
        self._reader.start()
        return self

    def _serve_tcp(self) -> None:
        server = self._server
        assert server is not None
        while not self._closed.is_set():
            try:
                r, _, _ = select.select([server], [], [], 0.05)
                if not r:
                    continue
                conn, _ = server.accept()
            except (OSError, ValueError):
                return
            self._conn = conn
            self._rx.clear()
            self._master = conn.fileno()
            self._read_loop(stream=True)
            self._master = -1
            self._conn = None
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        """Stop serving (the pty or the TCP port closes)."""
        self._closed.set()
        self._abort.set()
        self._drop_tcp()
        for sock in (self._server,):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        for th in (self._reader, self._runner):
            if th is not None and th is not threading.current_thread():
                th.join(2.0)

    def _drop_tcp(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        self._master = -1
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        return True

    def drop(self) -> None:
        """A dropped connection: the pty closes under the client (over TCP:
        the client's connection closes, the fake takes the next one); a script
        running goes on in the 'instrument', unheard."""
        if self._server is not None:
            self._drop_tcp()
            return
        self.close()

    def __enter__(self) -> FakeEmStat:
        return self if self._reader is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def inject_error(self, code: int = 0x0032, after_points: int = 0) -> None:
        """The next measurement loop fails with ``!code`` after ``after_points``
        data packages (0x0032: the cell severely overloaded)."""
        self._inject = (int(code), int(after_points))

    @property
    def cell_on(self) -> bool:
        return self.world.cell_on(self.channel)

    @property
    def running(self) -> bool:
        return self._busy

    # ------------------------------------------------------------- I/O
    def _send(self, text: str) -> None:
        if self.unresponsive or self._master < 0:
            return
        data = text.encode("ascii")
        with self._wlock:
            while data:
                try:
                    n = os.write(self._master, data)
                except OSError:
                    return
                data = data[n:]

    def _read_loop(self, stream: bool = False) -> None:
        while not self._closed.is_set():
            fd = self._master
            if fd < 0:
                return
            try:
                r, _, _ = select.select([fd], [], [], 0.05)
                if not r:
                    continue
                chunk = os.read(fd, 4096)
            except (OSError, ValueError):
                return
            if not chunk:
                if stream:
                    return  # the client closed the connection
                continue
            if self.unresponsive:
                continue
            self._rx += chunk.replace(b"\x11", b"").replace(b"\x13", b"")
            while True:
                i = self._rx.find(b"\n")
                if i < 0:
                    break
                line = self._rx[:i].decode("ascii", "replace").rstrip("\r")
                del self._rx[: i + 1]
                self._on_line(line)

    def _on_line(self, line: str) -> None:
        if self._script is not None:  # receiving a script
            if line == "":
                script, self._script = self._script, None
                self._load(script)
            else:
                self._script.append(line)
            return
        self.commands.append(line)
        if line == "":
            return
        c = line[0]
        if c == "Z" and line == "Z":
            if self.running:
                self._abort.set()
            else:
                self._send("Z!0006\n")
        elif self.running:
            self._send(f"{c}!0006\n")  # only Z while a script runs
        elif line == "e":
            self._script = []
        elif line == "t":
            self._send(f"{self.version}\nR*\n")
        elif line == "i":
            self._send(f"i{self.serial_number}\n")
        elif line == "v":
            self._send("v0108\n")
        else:
            self._send(f"{c}!0003\n")

    # ------------------------------------------------------- the script
    def _load(self, lines: list[str]) -> None:
        self.scripts.append(lines)
        try:
            cmds, finished = self._parse(lines)
        except _ScriptError as e:
            self._send(f"e{e.text()}\n")
            return
        self._abort.clear()
        self._busy = True
        self._send("e\n")
        self._runner = threading.Thread(
            target=self._run, args=(cmds, finished), name="FakeEmStat script", daemon=True
        )
        self._runner.start()

    def _parse(self, lines: list[str]) -> tuple[list[_Cmd], list[_Cmd]]:
        declared: set[str] = set()
        main: list[_Cmd] = []
        finished: list[_Cmd] = []
        target = main
        loop: _Cmd | None = None
        for n, raw in enumerate(lines, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            name, *args = text.split()
            if name not in _ARGS:
                raise _ScriptError(0x4001, n, 1 + raw.index(name))
            if len(args) != _ARGS[name]:
                raise _ScriptError(0x420A if len(args) > _ARGS[name] else 0x4004, n)
            cmd = _Cmd(n, name, args)
            if name == "var":
                if not _NAME.match(args[0]):
                    raise _ScriptError(0x402B, n)
                if args[0] in declared:
                    raise _ScriptError(0x4026, n)
                declared.add(args[0])
            elif name == "on_finished:":
                if loop is not None:
                    raise _ScriptError(0x4018, n)
                target = finished
                continue
            self._check_args(cmd, declared)
            if name in _LOOPS:
                if loop is not None:
                    raise _ScriptError(0x400B, n)
                loop = cmd
                target.append(cmd)
                continue
            if name == "endloop":
                if loop is None:
                    raise _ScriptError(0x400C, n)
                loop = None
                continue
            if name.startswith("pck_"):
                if loop is None:
                    raise _ScriptError(0x400C, n)
                loop.body.append(cmd)
                continue
            if loop is not None:
                raise _ScriptError(0x401A, n)
            target.append(cmd)
        if loop is not None:
            raise _ScriptError(0x4018, len(lines))
        return main, finished

    def _check_args(self, cmd: _Cmd, declared: set[str]) -> None:
        name, args = cmd.name, cmd.args
        numeric = {
            "set_pgstat_chan": args,
            "set_pgstat_mode": args,
            "set_max_bandwidth": args,
            "set_range_minmax": args[1:],
            "set_range": args[1:],
            "set_autoranging": args[1:],
            "set_e": args,
            "meas_loop_ca": args[2:],
            "meas_loop_lsv": args[2:],
        }.get(name, [])
        for a in numeric:
            try:
                parse_number(a)
            except ValueError:
                if _NAME.match(a) and a not in declared:
                    raise _ScriptError(0x420B, cmd.line) from None
                if not _NAME.match(a):
                    raise _ScriptError(0x4004, cmd.line) from None
                raise _ScriptError(0x4209, cmd.line) from None  # variables as numbers: not here
        if name in _LOOPS or name == "pck_add":
            for v in args[: 2 if name in _LOOPS else 1]:
                if v not in declared:
                    raise _ScriptError(0x420B, cmd.line)
        if name in ("set_range", "set_autoranging"):
            if args[0] != "ba":
                raise _ScriptError(0x4206, cmd.line)
            if any(a not in self.ranges for a in args[1:]):
                raise _ScriptError(0x4206, cmd.line)
        if name == "set_range_minmax" and args[0] != "da":
            raise _ScriptError(0x4206, cmd.line)
        if name == "set_pgstat_mode" and parse_number(args[0]) not in (0, 2, 3):
            raise _ScriptError(0x0021, cmd.line)
        if name in _LOOPS:
            vals = [parse_number(a) for a in args[2:]]
            if name == "meas_loop_ca" and (vals[1] <= 0 or vals[2] <= 0):
                raise _ScriptError(0x4204, cmd.line)
            if name == "meas_loop_lsv" and (vals[2] <= 0 or vals[3] <= 0):
                raise _ScriptError(0x4204, cmd.line)

    def _run(self, cmds: list[_Cmd], finished: list[_Cmd]) -> None:
        self.last_points = np.empty((2, 0))
        points: list[tuple[float, float]] = []
        try:
            for cmd in cmds:
                if self._abort.is_set() or self._closed.is_set():
                    break
                self._do(cmd, points)
        except _ScriptError as e:
            self.last_points = np.array(points).T.reshape(2, -1)
            self._busy = False
            self._send(e.text() + "\n")  # a run-time error: no on_finished, no empty line
            return
        for cmd in finished:
            with contextlib.suppress(_ScriptError):
                self._do(cmd, points)
        self.last_points = np.array(points).T.reshape(2, -1)
        self._busy = False
        self._send("\n")

    def _amp(self) -> Any:
        return self.world.rig.probe(self.channel).amplifier

    def _do(self, cmd: _Cmd, points: list[tuple[float, float]]) -> None:
        name, a = cmd.name, cmd.args
        w = self.world
        if name == "set_e":
            e = parse_number(a[0])
            if not self.e_range[0] <= e <= self.e_range[1]:
                raise _ScriptError(0x000F, cmd.line)
            w.set_potential(self.channel, e)
        elif name == "cell_on":
            w.set_cell(self.channel, True)
        elif name == "cell_off":
            w.set_cell(self.channel, False)
        elif name == "set_range":
            with w.lock:
                self._amp().range_A = parse_number(a[1])
        elif name == "set_max_bandwidth":
            with w.lock:
                self._amp().filter_hz = parse_number(a[0])
        elif name == "set_range_minmax":
            lo, hi = parse_number(a[1]), parse_number(a[2])
            if lo < self.e_range[0] or hi > self.e_range[1]:
                raise _ScriptError(0x000F, cmd.line)
        elif name in _LOOPS:
            self._loop(cmd, points)

    def _loop(self, cmd: _Cmd, points: list[tuple[float, float]]) -> None:
        if not self.cell_on:
            raise _ScriptError(0x4027, cmd.line)
        vals = [parse_number(x) for x in cmd.args[2:]]
        if cmd.name == "meas_loop_ca":
            e_dc, dt, t_run = vals
            n = int(math.floor(t_run / dt + 1e-9))
            e_first, e_step = e_dc, 0.0
        else:
            e_begin, e_end, step, rate = vals
            n = int(math.floor(abs(e_end - e_begin) / step + 1e-9)) + 1
            e_first, e_step = e_begin, math.copysign(step, e_end - e_begin)
            dt = step / rate
        e_last = e_first + e_step * (n - 1)
        if not self.e_range[0] <= min(e_first, e_last) <= max(e_first, e_last) <= self.e_range[1]:
            raise _ScriptError(0x000F, cmd.line)
        pvar, cvar = cmd.args[0], cmd.args[1]
        sent = [c.args[0] for c in cmd.body if c.name == "pck_add"]
        self._send(_LOOPS[cmd.name] + "\n")
        inject, self._inject = self._inject, None
        t0 = time.monotonic()
        k = 0
        while k < n:
            if self._closed.is_set():
                return
            if self._abort.is_set():
                if self.abort_delay_s:
                    time.sleep(self.abort_delay_s)
                self._send("Z\n")
                break
            due = min(n, int((time.monotonic() - t0) / dt))
            if due <= k:
                time.sleep(min(0.005, max(0.0, t0 + (k + 1) * dt - time.monotonic())))
                continue
            if inject is not None and due > inject[1]:
                due = max(k, inject[1])
            chunk = e_first + e_step * np.arange(k, due)
            if chunk.size:
                # on the instrument's clock: sample k at t0 + (k + 1) dt
                i = self.world.waveform(self.channel, chunk, 1.0 / dt, t0 + (k + 1) * dt)[2]
                out = []
                for ek, ik in zip(chunk, i, strict=True):
                    vals_by_name = {pvar: ("da", ek), cvar: ("ba", ik)}
                    parts = []
                    for v in sent:
                        t, x = vals_by_name.get(v, ("aa", math.nan))
                        meta = ",10,2" + f"{self._range_index():02X}" if t == "ba" else ""
                        parts.append(f"{t}{encode_value(float(x))}{meta}")
                    out.append("P" + ";".join(parts) + "\n")
                    points.append((float(ek), float(ik)))
                self._send("".join(out))
                k = due
            if inject is not None and k >= inject[1]:
                raise _ScriptError(inject[0], cmd.line)
        self._send("*\n")

    def _range_index(self) -> int:
        r = self._amp().range_A
        vals = [parse_number(x) for x in self.ranges]
        return min(range(len(vals)), key=lambda j: abs(math.log(vals[j] / r)))
