"""A fake PI piezo controller (E-727 / E-709 / E-712) speaking GCS 2 ASCII.

It serves the unmodified ``pipython`` client over TCP (as the controller's
Ethernet port, default 50000) or over a pseudo-terminal (as its USB virtual COM
port or RS-232), one client at a time, as the controllers do. Axes move in wall
time at their velocity (``VEL``) on the :class:`~.world.FakeWorld`'s stage, and
report ``ONT?`` true after a settling delay; ``#5`` gives the motion bit mask.

What the real controllers do and this fake does too: every command may leave
an error code that ``ERR?`` returns once and clears (pipython asks after
every command); ``MOV`` with the servo off is error 5, out of the travel
(``TMN?``/``TMX?``) error 7 and moves nothing; an unknown axis error 15, an
unknown command error 2, bad parameters error 1; ``HLT``, ``STP`` and ``#24``
stop at once and leave error 10. Fault knobs: :meth:`FakeGCS.inject_error`
(the next command fails with a code), ``unresponsive`` (it stops answering,
a hung controller or a pulled cable on a serial line) and :meth:`FakeGCS.drop`
(the connection is closed, as a power cut or an Ethernet link lost).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .world import FakeWorld

#: GCS 2 error codes used here (pipython's gcserror names them)
PARAM_SYNTAX = 1
UNKNOWN_COMMAND = 2
NO_SERVO = 5
OUT_OF_LIMITS = 7
STOPPED = 10
INVALID_AXIS = 15

_IDN = {
    "E-727": "(c)2017 Physik Instrumente (PI) GmbH & Co. KG, E-727, 0117000000, 01.00.00.00",
    "E-709": "(c)2016 Physik Instrumente (PI) GmbH & Co. KG, E-709, 0116000000, 01.00.00.00",
    "E-712": "(c)2015 Physik Instrumente (PI) GmbH & Co. KG, E-712, 0115000000, 01.00.00.00",
}


class FakeGCS:
    """One PI controller: its axes (GCS ids) mapped to the world's axes."""

    def __init__(
        self,
        world: FakeWorld,
        *,
        model: str = "E-727",
        axes: dict[str, str] | None = None,
        velocity_um_s: float = 100.0,
        max_velocity_um_s: float = 2000.0,
        settle_s: float = 0.002,
        reply_delay_s: float = 0.0,
    ) -> None:
        if model not in _IDN:
            raise ValueError(f"model {model!r} is not one of {sorted(_IDN)}")
        self.world = world
        self.model = model
        self.axes = dict(axes or {"1": "X", "2": "Y", "3": "Z"})
        for ax in self.axes.values():
            a = world.axes[ax]
            a.velocity_um_s, a.max_velocity_um_s, a.settle_s = (
                velocity_um_s,
                max_velocity_um_s,
                settle_s,
            )
        #: each reply waits this long (a slow serial line)
        self.reply_delay_s = reply_delay_s
        self.unresponsive = False
        self.error = 0
        self._injected: int | None = None
        self._injected_for = ""
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._conn: Any = None
        self._server: socket.socket | None = None
        self._pty: tuple[int, int] | None = None
        #: every command line received (tests read what the client sent)
        self.log: list[str] = []
        self.address: tuple[str, int] | None = None
        self.port_name: str | None = None

    # ------------------------------------------------------------ transports
    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0: a free port); returns the address."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(1)
        srv.settimeout(0.1)
        self._server = srv
        self.address = srv.getsockname()[:2]
        self._spawn(self._accept_loop)
        return self.address

    def serve_pty(self) -> str:
        """Open a pseudo-terminal; returns the name of its client end
        (``/dev/pts/N``, opened by pyserial as a serial port)."""
        import tty

        master, slave = os.openpty()
        tty.setraw(slave)
        self._pty = (master, slave)
        self.port_name = os.ttyname(slave)
        self._spawn(self._pty_loop)
        return self.port_name

    def _spawn(self, fn: Any) -> None:
        t = threading.Thread(target=fn, name=f"fake-{self.model}", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        srv = self._server
        assert srv is not None
        while not self._closing.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.1)
            self._conn = conn
            buf = b""
            while not self._closing.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                buf = self._feed(buf + data, conn.sendall)
            with contextlib.suppress(OSError):
                conn.close()
            self._conn = None

    def _pty_loop(self) -> None:
        import select

        assert self._pty is not None
        master = self._pty[0]
        buf = b""

        def write(b: bytes) -> None:
            os.write(master, b)

        while not self._closing.is_set():
            try:
                r, _, _ = select.select([master], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            buf = self._feed(buf + data, write)

    def close(self) -> None:
        """Stop serving (the axes keep their positions)."""
        self._closing.set()
        self.drop()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        for t in self._threads:
            t.join(timeout=2)

    def drop(self) -> None:
        """Close the client's connection (TCP) or the line (pty), as a lost link."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._pty is not None:
            for fd in self._pty:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pty = None

    def __enter__(self) -> FakeGCS:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------- protocol
    def inject_error(self, code: int, command: str = "") -> None:
        """The next command (the next ``command``, e.g. "MOV", if given)
        fails with GCS error ``code`` (e.g. a servo switched off by an
        overload) and does nothing."""
        self._injected = int(code)
        self._injected_for = command.upper()

    def _feed(self, buf: bytes, send: Any) -> bytes:
        """Handle every complete command in ``buf``; returns the rest."""
        while buf:
            c = buf[0]
            if c in (4, 5, 7, 24):  # single-character commands, no line end
                buf = buf[1:]
                self._reply(send, self._single(c))
                continue
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl].decode("cp1252", "replace").strip(), buf[nl + 1 :]
            if line:
                self._reply(send, self._line(line))
        return buf

    def _reply(self, send: Any, answer: str | None) -> None:
        if answer is None or self.unresponsive:
            return
        if self.reply_delay_s:
            time.sleep(self.reply_delay_s)
        with contextlib.suppress(OSError):
            send(answer.encode("cp1252"))

    def _set_error(self, code: int) -> None:
        if not self.error:  # the first error stays until read
            self.error = code

    @staticmethod
    def _lines(items: list[str]) -> str:
        """A GCS multi-line answer: every line but the last ends with ' \\n'."""
        return " \n".join(items) + "\n"

    def _single(self, c: int) -> str | None:
        with self._lock:
            self.log.append(f"#{c}")
            w = self.world
            if c == 5:
                mask = 0
                for i, ax in enumerate(self.axes.values()):
                    if w.axes[ax].moving():
                        mask |= 1 << i
                return f"{mask:X}\n"
            if c == 7:
                return chr(177) + "\n"
            if c == 24:
                w.halt()
                self._set_error(STOPPED)
                return None
            if c == 4:
                return "0\n"
        return None

    def _line(self, line: str) -> str | None:
        with self._lock:
            self.log.append(line)
            cmd, *args = line.split()
            cmd = cmd.upper()
            if (
                self._injected is not None
                and cmd not in ("ERR?", "*IDN?")
                and self._injected_for in ("", cmd)
            ):
                self._set_error(self._injected)
                self._injected = None
                return "0\n" if cmd.endswith("?") else None
            fn = _COMMANDS.get(cmd)
            if fn is None:
                self._set_error(UNKNOWN_COMMAND)
                return None
            try:
                return fn(self, args)
            except _GCSFail as e:
                self._set_error(e.code)
                return None

    # each handler: args -> the answer (None for a set command)
    def _axes_of(self, args: list[str]) -> list[str]:
        ids = args or list(self.axes)
        for a in ids:
            if a not in self.axes:
                raise _GCSFail(INVALID_AXIS)
        return ids

    def _pairs(self, args: list[str]) -> list[tuple[str, float]]:
        if not args or len(args) % 2:
            raise _GCSFail(PARAM_SYNTAX)
        out = []
        for a, v in zip(args[::2], args[1::2], strict=True):
            if a not in self.axes:
                raise _GCSFail(INVALID_AXIS)
            try:
                out.append((a, float(v)))
            except ValueError:
                raise _GCSFail(PARAM_SYNTAX) from None
        return out

    def _per_axis(self, args: list[str], value: Any) -> str:
        return self._lines([f"{a}={value(a)}" for a in self._axes_of(args)])

    def _ax(self, gcs_id: str) -> Any:
        return self.world.axes[self.axes[gcs_id]]

    def q_err(self, args: list[str]) -> str:
        code, self.error = self.error, 0
        return f"{code}\n"

    def q_idn(self, args: list[str]) -> str:
        return _IDN[self.model] + "\n"

    def q_csv(self, args: list[str]) -> str:
        return "2.0000\n"

    def q_sai(self, args: list[str]) -> str:
        return self._lines(list(self.axes))

    def q_cst(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: f"P-{'5' if self.axes[a] != 'Z' else '7'}61")

    def svo(self, args: list[str]) -> None:
        for a, v in self._pairs(args):
            ax = self._ax(a)
            if not v:
                ax.halt()
            ax.servo = bool(v)

    def q_svo(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: int(self._ax(a).servo))

    def mov(self, args: list[str]) -> None:
        pairs = self._pairs(args)
        for a, v in pairs:  # all or nothing, as the controller does
            ax = self._ax(a)
            if not ax.servo:
                raise _GCSFail(NO_SERVO)
            if not ax.low_um <= v <= ax.high_um:
                raise _GCSFail(OUT_OF_LIMITS)
        for a, v in pairs:
            self.world.move(self.axes[a], v)

    def q_mov(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: f"{self._ax(a)._target_um:.6f}")

    def q_pos(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: f"{self.world.position(self.axes[a]):.6f}")

    def q_ont(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: int(self._ax(a).on_target()))

    def vel(self, args: list[str]) -> None:
        pairs = self._pairs(args)
        for a, v in pairs:
            if not 0 < v <= self._ax(a).max_velocity_um_s:
                raise _GCSFail(OUT_OF_LIMITS)
        for a, v in pairs:
            self._ax(a).velocity_um_s = v

    def q_vel(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: f"{self._ax(a).velocity_um_s:.6f}")

    def q_tmn(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: f"{self._ax(a).low_um:.6f}")

    def q_tmx(self, args: list[str]) -> str:
        return self._per_axis(args, lambda a: f"{self._ax(a).high_um:.6f}")

    def hlt(self, args: list[str]) -> None:
        for a in self._axes_of(args):
            self.world.halt(self.axes[a])
        raise _GCSFail(STOPPED)

    def stp(self, args: list[str]) -> None:
        self.world.halt()
        raise _GCSFail(STOPPED)


class _GCSFail(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_COMMANDS = {
    "ERR?": FakeGCS.q_err,
    "*IDN?": FakeGCS.q_idn,
    "CSV?": FakeGCS.q_csv,
    "SAI?": FakeGCS.q_sai,
    "CST?": FakeGCS.q_cst,
    "SVO": FakeGCS.svo,
    "SVO?": FakeGCS.q_svo,
    "MOV": FakeGCS.mov,
    "MOV?": FakeGCS.q_mov,
    "POS?": FakeGCS.q_pos,
    "ONT?": FakeGCS.q_ont,
    "VEL": FakeGCS.vel,
    "VEL?": FakeGCS.q_vel,
    "TMN?": FakeGCS.q_tmn,
    "TMX?": FakeGCS.q_tmx,
    "HLT": FakeGCS.hlt,
    "STP": FakeGCS.stp,
}
