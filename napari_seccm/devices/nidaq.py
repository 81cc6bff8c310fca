"""An SECCM controller on an NI-DAQ board, through ``nidaqmx``.

``NIDAQHub`` is a controller hub (see :mod:`._hub`) whose peripherals are the
generic ``Potentiostat`` and a ``PiezoZ`` driven by the DAQ through a piezo
amplifier. The board is reached through the NI-DAQmx driver on this computer
(``GrpcAddress`` empty) or through the NI gRPC Device Server on another one
(``GrpcAddress`` = ``host:port``), with the same ``nidaqmx`` calls.

Wiring (the pre-initialization properties say what is connected where):

- ``PotentialChannel`` (AO, e.g. ``ao0``) -> the potentiostat's external
  potential input (cell volts = AO volts x ``PotentialGain_V_per_V``). The
  cell has no relay here: ``Cell`` = ``Off`` holds the potential output at 0 V.
- the current amplifier's output -> ``CurrentChannel`` (AI, e.g. ``ai0``):
  amps = AI volts / ``AmplifierGain_V_per_A``. A current range is an AI range
  (0.1 ... ``AIRange_V``) divided by the gain.
- ``ZChannel`` (AO, e.g. ``ao1``; empty: no Z on this DAQ) -> the Z piezo
  amplifier's input: Z = ``ZOffset_um`` + ``ZScale_um_per_V`` x volts, within
  ``ZMinOutput_V`` ... ``ZMaxOutput_V``; no Z command is faster than
  ``ZSlew_um_per_s``. Z is the commanded position (no sensor is read).

Waveforms are hardware-timed: the potential AO task and the current AI task
share the AO's sample clock and start trigger (the AI is started first, armed
on the AO's start trigger), both finite buffers of ``Program.sample(rate)``
points; the samples are read back in chunks of ~20 ms so that an abort ends
the run within a few tens of ms, keeping the samples so far.

The approach: the Z AO ramps down at the speed (a finite buffer at 1 kHz
updates) while the AI, armed on the same start trigger, samples the current;
the samples are read back in ~2 ms chunks and the detector (``absolute`` /
``rise`` / ``either``, with ``confirm_samples``, as in the simulator) runs on
them; on a contact the Z task is stopped and the number of Z samples the
board generated tells where Z stopped. The contact height is the commanded Z
at the first fired sample; the detection latency (from that sample to the
last Z update) is reported with each approach (``detection_latency_s`` in the
result and ``DetectionLatency_s`` on the hub).

``current_monitor(channel, rate_hz)`` streams the current continuously for
another hub's stage that approaches in software.

Errors: DAQmx errors become messages with their code and NI's text; a lost
connection to the device server says what the hardware may still be doing
(the last AO values stay on the outputs) and every further operation is
refused until the config is reloaded.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..model.detect import ContactWatch
from ..model.errors import InstrumentError
from ._approach import ApproachProgress
from ._base import check_range, register
from ._hub import SECCMHub
from .potentiostat import Potentiostat
from .stages import PiezoZ

if TYPE_CHECKING:
    from ..model.program import Program

log = logging.getLogger(__name__)

#: the input ranges (+/- V) of an NI X-series AI channel
AI_RANGES_V = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: the output range of the AO channels, V
AO_RANGE_V = 10.0
#: update rate of the Z output during moves and approaches, Hz
Z_RATE_HZ = 1000.0
#: the span of a waveform's read-back chunks, s (an abort waits at most this)
PROGRAM_CHUNK_S = 0.02
#: the span of an approach's read-back chunks, s (part of the detection latency)
APPROACH_CHUNK_S = 0.002
#: deadline of an ordinary call to the device server, s (a call that waits for
#: samples gets its own timeout on top)
CALL_DEADLINE_S = 5.0
#: deadline of each call of the emergency stop, s
ESTOP_DEADLINE_S = 0.5
#: the probe / channel name of the DAQ's one cell
CHANNEL = "A"


class DAQError(InstrumentError):
    """A DAQmx error or a lost connection, explained."""


def _nidaqmx() -> Any:
    try:
        import nidaqmx
    except ImportError as e:
        raise ImportError(
            "the NI-DAQ hub needs the 'nidaqmx' package (with gRPC support for a remote "
            "DAQ): pip install 'napari-seccm[nidaq]'"
        ) from e
    return nidaqmx


def _deadline_interceptor(default_s: float, local: threading.local) -> Any:
    """A gRPC client interceptor that gives every call a deadline: ``nidaqmx``
    sets none, and a device server that stops answering must not hang the
    instrument (a read or wait gets its own timeout on top)."""
    import grpc

    class Details(
        collections.namedtuple(
            "Details",
            ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
        ),
        grpc.ClientCallDetails,
    ):
        pass

    class Deadlines(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
        def _details(self, d: Any, request: Any) -> Any:
            if d.timeout is not None:
                return d
            short = getattr(local, "deadline_s", None)
            if short is not None:
                t = short
            else:
                wait = getattr(request, "timeout", 0.0) or getattr(request, "time_to_wait", 0.0)
                t = default_s + max(float(wait), 0.0)
            return Details(
                d.method,
                t,
                d.metadata,
                d.credentials,
                getattr(d, "wait_for_ready", None),
                getattr(d, "compression", None),
            )

        def intercept_unary_unary(self, continuation: Any, d: Any, request: Any) -> Any:
            return continuation(self._details(d, request), request)

        def intercept_unary_stream(self, continuation: Any, d: Any, request: Any) -> Any:
            return continuation(self._details(d, request), request)

    return Deadlines()


class CurrentMonitor:
    """A continuous stream of the current (a hardware-timed AI task).

    ``read(timeout_s)`` returns the samples acquired since the last read as
    rows ``[t_s, I_A]`` (``t_s`` on the ``time.monotonic()`` base; it waits up
    to ``timeout_s`` for at least one); ``close()`` ends the stream.
    """

    def __init__(self, ctrl: NIDAQController, rate_hz: float) -> None:
        self._ctrl = ctrl
        self.sample_rate_hz = float(rate_hz)
        nid = ctrl._nid
        self._task = ctrl._new_task("monitor")
        try:
            lim = ctrl._ai_limit_V()
            self._task.ai_channels.add_ai_voltage_chan(
                ctrl._phys(ctrl.current_channel), min_val=-lim, max_val=lim
            )
            self._task.timing.cfg_samp_clk_timing(
                self.sample_rate_hz,
                sample_mode=nid.constants.AcquisitionType.CONTINUOUS,
                samps_per_chan=max(int(self.sample_rate_hz * 10), 1000),
            )
            self._reader = ctrl._reader(self._task)
            t_asked = time.monotonic()
            self._task.start()
        except BaseException:
            with contextlib.suppress(Exception):
                self._task.close()
            raise
        # the board's clock started between the request and the reply: sample
        # 0 at most at the reply, and (see read) no later than any sample's
        # arrival allows; never before the request
        self._t_asked = t_asked
        self._t0 = time.monotonic()
        self._n = 0
        self._closed = False

    def read(self, timeout_s: float = 0.1) -> np.ndarray:
        ctrl = self._ctrl
        with ctrl._daq("reading the current monitor"):
            avail = int(self._task.in_stream.avail_samp_per_chan)
            n = max(avail, 1)
            buf = np.zeros(n)
            try:
                got = self._reader.read_many_sample(buf, n, timeout=float(timeout_s))
            except ctrl._nid.errors.DaqReadError as e:
                if e.error_code != -200284:  # a timeout: no sample yet
                    raise
                got = int(e.samps_per_chan_read or 0)
        if got:
            # a sample cannot arrive before it was taken: the earliest arrival
            # bounds the clock's start (a slow reply to the start request
            # would otherwise stamp every sample late)
            arrived = time.monotonic() - (self._n + got) / self.sample_rate_hz
            self._t0 = max(self._t_asked, min(self._t0, arrived))
        t = self._t0 + (self._n + np.arange(got)) / self.sample_rate_hz
        self._n += got
        i = buf[:got] / ctrl.gain
        if got:
            ctrl._last_current = float(i[-1])
        return np.vstack((t, i))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ctrl._monitors.discard(self)
        with contextlib.suppress(Exception), self._ctrl._short_deadlines():
            self._task.close()

    def __enter__(self) -> CurrentMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NIDAQController:
    """The controller behind :class:`NIDAQHub`: one potentiostat channel (A) and
    optionally the Z piezo of probe A, on one NI-DAQ board."""

    #: every operation takes wall time: the peripherals run it on their workers
    runs_inline = False

    def __init__(
        self,
        *,
        device: str = "Dev1",
        grpc_address: str = "",
        potential_channel: str = "ao0",
        current_channel: str = "ai0",
        potential_gain: float = 1.0,
        gain_V_per_A: float = 1e9,
        ai_range_V: float = 10.0,
        z_channel: str = "ao1",
        z_scale_um_per_V: float = 10.0,
        z_offset_um: float = 0.0,
        z_slew_um_s: float = 1000.0,
        z_min_output_V: float = 0.0,
        z_max_output_V: float = 10.0,
    ) -> None:
        self._nid = _nidaqmx()
        if ai_range_V not in AI_RANGES_V:
            raise ValueError(
                f"AIRange_V {ai_range_V:g} V is not an AI range of the DAQ; choose one of "
                f"{list(AI_RANGES_V)} V"
            )
        check_range("AmplifierGain_V_per_A", gain_V_per_A, 1e3, 1e13, "V/A")
        check_range("ZMinOutput_V", z_min_output_V, -AO_RANGE_V, AO_RANGE_V, "V")
        check_range("ZMaxOutput_V", z_max_output_V, z_min_output_V, AO_RANGE_V, "V")
        if z_channel and z_channel == potential_channel:
            raise ValueError(
                f"ZChannel {z_channel!r} is also the PotentialChannel; give each its own AO channel"
            )
        self.device = device
        self.address = grpc_address
        self.potential_channel = potential_channel
        self.current_channel = current_channel
        self.potential_gain = potential_gain
        self.gain = gain_V_per_A
        self.ai_range_V = ai_range_V
        self.z_channel = z_channel
        self.z_scale = z_scale_um_per_V
        self.z_offset = z_offset_um
        self.z_slew = z_slew_um_s
        self.z_out = (z_min_output_V, z_max_output_V)
        self.current_ranges_A = tuple(r / gain_V_per_A for r in AI_RANGES_V if r <= ai_range_V)
        self._range_A = self.current_ranges_A[-1]
        self._filter_hz = 1000.0
        self._rate_hz = 5000.0
        self._potential_V = 0.0
        self._cell_on = False
        self._last_current = math.nan
        self._names = itertools.count()
        self._lock = threading.RLock()  # the on-demand tasks and the bookkeeping
        self._static: dict[str, Any] = {}  # on-demand tasks: "pot", "ai", "z"
        self._active: list[Any] = []  # the tasks of the operation running now
        self._op_running = False
        self._monitors: set[CurrentMonitor] = set()
        self._local = threading.local()
        self._lost = ""
        self._z_um = math.nan
        self._z_ramp: tuple[float, np.ndarray] | None = None  # (start, values um)
        #: the samples of the approach in progress so far
        self._progress = ApproachProgress()
        self.last_detection_latency_s = math.nan
        self._channel = None
        if grpc_address:
            import grpc

            raw = grpc.insecure_channel(
                grpc_address,
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                ],
            )
            self._raw_channel = raw
            self._channel = grpc.intercept_channel(
                raw, _deadline_interceptor(CALL_DEADLINE_S, self._local)
            )
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    # --------------------------------------------------------- plumbing
    def _where(self) -> str:
        return f"the NI gRPC Device Server at {self.address}" if self.address else "NI-DAQmx"

    def _connect(self) -> None:
        nid = self._nid
        with self._daq(f"connecting to {self.device}"):
            if self._channel is not None:
                system = nid.system.System.remote(nid.GrpcSessionOptions(self._channel, ""))
            else:
                system = nid.system.System.local()
            names = list(system.devices.device_names)
        if self.device not in names:
            raise DAQError(
                f"DAQ device {self.device!r} is not known to {self._where()}; its devices are "
                f"{names} (set the hub's Device)"
            )
        # the outputs to known values: the potential at 0 V, Z at the top of
        # its span (the pipette retracted: the safe end)
        self._write("pot", 0.0)
        if self.z_channel:
            self._write("z", self.z_out[1])
            self._z_um = self._z_of(self.z_out[1])

    def _phys(self, ch: str) -> str:
        return f"{self.device}/{ch}"

    def _ai_limit_V(self) -> float:
        return self._range_A * self.gain

    def _new_task(self, tag: str) -> Any:
        nid = self._nid
        name = f"seccm_{tag}_{next(self._names)}"
        if self._channel is None:
            return nid.Task(name)
        opts = nid.GrpcSessionOptions(
            self._channel,
            name,
            initialization_behavior=nid.grpc_session_options.SessionInitializationBehavior.INITIALIZE_SERVER_SESSION,
        )
        return nid.Task(name, grpc_options=opts)

    def _reader(self, task: Any) -> Any:
        from nidaqmx.stream_readers import AnalogSingleChannelReader

        r = AnalogSingleChannelReader(task.in_stream)
        r.verify_array_shape = False
        return r

    def _writer(self, task: Any, auto_start: bool) -> Any:
        from nidaqmx.stream_writers import AnalogSingleChannelWriter

        w = AnalogSingleChannelWriter(task.out_stream, auto_start=auto_start)
        w.verify_array_shape = False
        return w

    @contextlib.contextmanager
    def _short_deadlines(self) -> Any:
        old = getattr(self._local, "deadline_s", None)
        self._local.deadline_s = ESTOP_DEADLINE_S
        try:
            yield
        finally:
            self._local.deadline_s = old

    def _is_connection_error(self, e: BaseException) -> bool:
        return isinstance(e, self._nid.errors.RpcError)

    @contextlib.contextmanager
    def _daq(self, what: str) -> Any:
        """Turn a DAQmx error or a lost connection into a clear DAQError."""
        if self._lost:
            raise DAQError(f"{what} refused: {self._lost}")
        try:
            yield
        except self._nid.errors.DaqError as e:
            msg = str(e).split("\n\nTask Name")[0].strip()
            raise DAQError(f"{what}: DAQmx error {e.error_code} from {self.device}: {msg}") from e
        except self._nid.errors.RpcError as e:
            self._lost = self._lost_message(what, e)
            raise DAQError(self._lost) from e

    def _lost_message(self, what: str, e: Any) -> str:
        import grpc

        code = grpc.StatusCode(e.rpc_code).name if hasattr(e, "rpc_code") else "?"
        how = "stopped answering" if code == "DEADLINE_EXCEEDED" else "was lost"
        still = (
            f"the last AO values stay on the outputs (potential {self._potential_out():g} V "
            f"on {self._phys(self.potential_channel)}"
        )
        if self.z_channel:
            still += f", Z near {self.get_z_um(CHANNEL):.3f} um on {self._phys(self.z_channel)}"
        still += ")"
        return (
            f"the connection to {self._where()} {how} while {what} ({code}: "
            f"{getattr(e, 'description', e)}). The DAQ may still be doing what it was told: "
            f"{still}, and a task it had started may run on to its end. Check the server and "
            "the device (switch the cell off at the potentiostat if in doubt), then reload the "
            "config to reconnect"
        )

    def _potential_out(self) -> float:
        return self._potential_V if self._cell_on else 0.0

    def _static_task(self, kind: str) -> Any:
        """The on-demand task of the potential AO ("pot"), the current AI ("ai")
        or the Z AO ("z"), created when first needed."""
        t = self._static.get(kind)
        if t is not None:
            return t
        t = self._new_task(f"ondemand_{kind}")
        try:
            if kind == "ai":
                lim = self._ai_limit_V()
                t.ai_channels.add_ai_voltage_chan(
                    self._phys(self.current_channel), min_val=-lim, max_val=lim
                )
            else:
                ch = self.potential_channel if kind == "pot" else self.z_channel
                t.ao_channels.add_ao_voltage_chan(
                    self._phys(ch), min_val=-AO_RANGE_V, max_val=AO_RANGE_V
                )
        except BaseException:
            with contextlib.suppress(Exception):
                t.close()
            raise
        self._static[kind] = t
        return t

    def _release(self, *kinds: str) -> None:
        """Clear on-demand tasks so that a timed task may use their channels
        (an AO output keeps its value)."""
        for kind in kinds:
            t = self._static.pop(kind, None)
            if t is not None:
                t.close()

    def _write(self, kind: str, volts: float) -> None:
        with self._lock:
            t = self._static_task(kind)
            self._writer(t, auto_start=True).write_one_sample(float(volts), timeout=2.0)

    def _z_of(self, volts: float) -> float:
        return self.z_offset + self.z_scale * volts

    def _volts_of_z(self, z_um: float) -> float:
        return (z_um - self.z_offset) / self.z_scale

    def _check_channel(self, channel: str) -> None:
        if channel != CHANNEL:
            raise ValueError(
                f"the NI-DAQ hub has one potentiostat channel and probe, {CHANNEL!r}; "
                f"not {channel!r}"
            )

    def _check_free(self, what: str) -> None:
        if self._lost:
            raise DAQError(f"{what} refused: {self._lost}")
        if self._op_running:
            raise RuntimeError(f"{what} refused: the DAQ is running another operation")
        if self._monitors:
            raise RuntimeError(f"{what} refused: the current monitor is streaming; close it first")

    # ------------------------------------------------------ potentiostat
    def configure(
        self, channel: str, *, range_A: float, filter_hz: float, sample_rate_hz: float
    ) -> None:
        """The current range is an AI range / the amplifier's gain; the filter
        is the amplifier's own (set on the amplifier: recorded here)."""
        self._check_channel(channel)
        match = [r for r in self.current_ranges_A if abs(range_A / r - 1) < 1e-6]
        if not match:
            raise ValueError(
                f"current range {range_A:g} A is not possible with the amplifier gain "
                f"{self.gain:g} V/A: the AI ranges up to AIRange_V {self.ai_range_V:g} V give "
                f"{[float(f'{r:.3g}') for r in self.current_ranges_A]} A (maximum "
                f"{self.current_ranges_A[-1]:g} A)"
            )
        check_range("sample rate", sample_rate_hz, 1.0, 1e6, "Hz")
        if match[0] != self._range_A:
            with self._lock:
                self._range_A = match[0]
                with self._daq("changing the AI range"):
                    self._release("ai")  # re-created with the new range when needed
        self._filter_hz, self._rate_hz = float(filter_hz), float(sample_rate_hz)

    def _check_potential(self, volts: float) -> float:
        ao = volts / self.potential_gain
        if not -AO_RANGE_V <= ao <= AO_RANGE_V:
            lim = AO_RANGE_V * abs(self.potential_gain)
            raise ValueError(
                f"potential {volts:g} V needs {ao:g} V on {self._phys(self.potential_channel)}, "
                f"outside the AO range +/-{AO_RANGE_V:g} V (limit +/-{lim:g} V of cell "
                "potential); nothing was changed"
            )
        return ao

    def set_cell(self, channel: str, on: bool) -> None:
        self._check_channel(channel)
        if not on and self._op_running:
            # the cell off during a program: stop it, then 0 V
            with self._daq("switching the cell off"):
                self._stop_active()
        self._cell_on = bool(on)
        if self._op_running:
            return
        with self._lock, self._daq("switching the cell " + ("on" if on else "off")):
            self._write("pot", self._check_potential(self._potential_out()))

    def set_potential(self, channel: str, volts: float) -> None:
        self._check_channel(channel)
        ao = self._check_potential(float(volts))
        self._check_free(f"setting the potential to {volts:g} V")
        with self._lock, self._daq(f"setting the potential to {volts:g} V"):
            if self._cell_on:
                self._write("pot", ao)
            self._potential_V = float(volts)

    def read_current(self, channel: str) -> float:
        self._check_channel(channel)
        if self._op_running or self._monitors:
            return self._last_current  # the running task owns the AI
        with self._lock, self._daq("reading the current"):
            t = self._static_task("ai")
            v = self._reader(t).read_one_sample(timeout=2.0)
        self._last_current = v / self.gain
        return self._last_current

    def current_monitor(self, channel: str, rate_hz: float) -> CurrentMonitor:
        """A continuous stream of the current at ``rate_hz`` (close it after use)."""
        self._check_channel(channel)
        check_range("current monitor rate", float(rate_hz), 1.0, 1e6, "Hz")
        self._check_free("starting the current monitor")
        with self._lock, self._daq("starting the current monitor"):
            self._release("ai")
            mon = CurrentMonitor(self, rate_hz)
            self._monitors.add(mon)
        return mon

    def _begin(self, what: str) -> None:
        with self._lock:
            if self._lost:
                raise DAQError(f"{what} refused: {self._lost}")
            self._check_free(what)
            self._op_running = True
            self._active = []

    def _end(self) -> None:
        """Clear the operation's tasks (never raises; quick when the server is gone)."""
        with self._lock:
            tasks, self._active = self._active, []
            self._op_running = False
            self._z_ramp = None
        ctx = self._short_deadlines() if self._lost else contextlib.nullcontext()
        with ctx:
            for t in tasks:
                with contextlib.suppress(Exception):
                    t.close()

    def _stop_active(self) -> None:
        """Stop (clear) the tasks of the running operation; an AO output keeps
        its last value."""
        for t in list(self._active):
            try:
                t.close()
            except Exception as e:
                if self._is_connection_error(e):
                    raise
        self._active = []

    def run_program(self, channel: str, program: Program, abort: threading.Event) -> np.ndarray:
        """Apply ``program`` (hardware-timed) and record [t_s, E_V, I_A]."""
        self._check_channel(channel)
        nid = self._nid
        fs = self._rate_hz
        e = program.sample(fs)
        n = int(e.size)
        if n == 0:
            return np.empty((3, 0))
        lo, hi = float(e.min()), float(e.max())
        self._check_potential(lo)
        self._check_potential(hi)
        e_out = e if self._cell_on else np.zeros(n)  # no cell: the output stays at 0 V
        self._begin("running a waveform")
        i_v = np.zeros(n)
        got = 0
        ao = None
        try:
            with self._daq("running a waveform"):
                with self._lock:
                    self._release("pot", "ai")
                    ao = self._new_task("program_ao")
                    self._active.append(ao)
                    ai = self._new_task("program_ai")
                    self._active.append(ai)
                ao.ao_channels.add_ao_voltage_chan(
                    self._phys(self.potential_channel), min_val=-AO_RANGE_V, max_val=AO_RANGE_V
                )
                ao.timing.cfg_samp_clk_timing(
                    fs, sample_mode=nid.constants.AcquisitionType.FINITE, samps_per_chan=n
                )
                lim = self._ai_limit_V()
                ai.ai_channels.add_ai_voltage_chan(
                    self._phys(self.current_channel), min_val=-lim, max_val=lim
                )
                # one sample clock and one start: the AI samples on the AO's
                # clock edges and is armed on the AO's start trigger
                ai.timing.cfg_samp_clk_timing(
                    fs,
                    source=f"/{self.device}/ao/SampleClock",
                    sample_mode=nid.constants.AcquisitionType.FINITE,
                    samps_per_chan=n,
                )
                ai.triggers.start_trigger.cfg_dig_edge_start_trig(f"/{self.device}/ao/StartTrigger")
                self._writer(ao, auto_start=False).write_many_sample(
                    e_out / self.potential_gain, timeout=10.0
                )
                reader = self._reader(ai)
                ai.start()
                ao.start()
                chunk = max(1, int(fs * PROGRAM_CHUNK_S))
                while got < n and not abort.is_set():
                    k = min(chunk, n - got)
                    try:
                        reader.read_many_sample(i_v[got : got + k], k, timeout=k / fs + 2.0)
                    except nid.errors.DaqError:
                        if abort.is_set():
                            break  # the emergency stop cleared the tasks
                        raise
                    got += k
                    self._last_current = float(i_v[got - 1] / self.gain)
        except DAQError:
            if self._lost or not abort.is_set():
                raise  # (an abort may clear the tasks under a read: that ends it)
        finally:
            self._end()
            if got and self._cell_on and not self._lost:
                # the on-demand output takes over at the last applied potential
                with contextlib.suppress(Exception), self._lock, self._daq("holding the potential"):
                    self._write("pot", e_out[got - 1] / self.potential_gain)
        if got and self._cell_on:
            self._potential_V = float(e[got - 1])
        t = np.arange(got) / fs
        return np.vstack((t, e_out[:got], i_v[:got] / self.gain))

    # ---------------------------------------------------------------- Z
    def _check_z(self, probe: str) -> None:
        self._check_channel(probe)
        if not self.z_channel:
            raise RuntimeError(
                "this NI-DAQ hub drives no Z (ZChannel is empty): use the Z stage of "
                "another controller"
            )

    def z_span_um(self) -> tuple[float, float]:
        a, b = (self._z_of(v) for v in self.z_out)
        return (min(a, b), max(a, b))

    def _check_z_target(self, z_um: float, speed_um_s: float) -> None:
        lo, hi = self.z_span_um()
        if not lo <= z_um <= hi:
            raise ValueError(
                f"Z target {z_um:g} um is outside the piezo amplifier's span [{lo:g}, {hi:g}] um "
                f"(ZOffset_um + ZScale_um_per_V x [ZMinOutput_V, ZMaxOutput_V]); nothing moved"
            )
        if not 0 < speed_um_s <= self.z_slew:
            raise ValueError(
                f"Z speed {speed_um_s:g} um/s is above the piezo amplifier's slew limit: maximum "
                f"{self.z_slew:g} um/s (ZSlew_um_per_s); nothing moved"
            )

    def get_z_um(self, probe: str) -> float:
        ramp = self._z_ramp
        if ramp is not None:
            t0, z = ramp
            k = int((time.monotonic() - t0) * Z_RATE_HZ)
            if k <= 0:
                return float(self._z_um)
            return float(z[min(k, z.size) - 1])
        return float(self._z_um)

    def _z_ramp_values(self, z0: float, z1: float, speed: float) -> np.ndarray:
        n = max(1, math.ceil(abs(z1 - z0) / speed * Z_RATE_HZ))
        return z0 + (z1 - z0) * np.arange(1, n + 1) / n

    def _start_z_ramp(self, z: np.ndarray, tag: str) -> Any:
        """A finite Z AO task playing ``z`` (um) at Z_RATE_HZ (not started)."""
        nid = self._nid
        with self._lock:
            self._release("z")
            task = self._new_task(tag)
            self._active.append(task)
        task.ao_channels.add_ao_voltage_chan(
            self._phys(self.z_channel), min_val=-AO_RANGE_V, max_val=AO_RANGE_V
        )
        task.timing.cfg_samp_clk_timing(
            Z_RATE_HZ, sample_mode=nid.constants.AcquisitionType.FINITE, samps_per_chan=z.size
        )
        self._writer(task, auto_start=False).write_many_sample(self._volts_of_z(z), timeout=10.0)
        return task

    def _z_generated(self, task: Any, z: np.ndarray) -> tuple[int, float]:
        """Samples the Z task generated and the Z it left on the output."""
        k = int(task.out_stream.total_samp_per_chan_generated)
        return k, float(z[k - 1]) if k > 0 else float(self._z_um)

    def move_z_um(self, probe: str, z: float, speed_um_s: float, abort: threading.Event) -> None:
        self._check_z(probe)
        self._check_z_target(float(z), float(speed_um_s))
        z0 = float(self._z_um)
        if abs(z - z0) < 1e-6:
            return
        self._begin("a Z move")
        path = self._z_ramp_values(z0, float(z), float(speed_um_s))
        try:
            with self._daq("moving Z"):
                task = self._start_z_ramp(path, "z_move")
                task.start()
                self._z_ramp = (time.monotonic(), path)
                while not task.is_task_done():
                    if abort.wait(0.005):
                        task.stop()
                        break
                _, self._z_um = self._z_generated(task, path)
        finally:
            self._z_ramp = None
            self._end()

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
        """Ramp Z down at ``speed_um_s`` while the AI reads the current; stop at
        the first confirmed contact or at ``stop_z_um``."""
        self._check_z(probe)
        watch = ContactWatch(threshold_A, mode, confirm_samples)  # refuses an unknown mode
        self._check_z_target(float(stop_z_um), float(speed_um_s))
        nid = self._nid
        z0 = float(self._z_um)
        if stop_z_um >= z0:
            raise ValueError(
                f"approach stop Z {stop_z_um:g} um must be below the current Z {z0:g} um"
            )
        fs = self._rate_hz
        path = self._z_ramp_values(z0, float(stop_z_um), float(speed_um_s))
        n_ai = int(math.ceil(path.size / Z_RATE_HZ * fs)) + 1
        run = int(confirm_samples) + 1
        self._begin("an approach")
        i_v = np.zeros(n_ai)
        got = 0
        hit: int | None = None
        reason = "no contact"
        z_final = z0
        k_gen = 0
        z_task = None
        t_start = time.monotonic()
        self._progress.reset()
        try:
            with self._daq("approaching"):
                with self._lock:
                    self._release("ai")
                    ai = self._new_task("approach_ai")
                    self._active.append(ai)
                lim = self._ai_limit_V()
                ai.ai_channels.add_ai_voltage_chan(
                    self._phys(self.current_channel), min_val=-lim, max_val=lim
                )
                ai.timing.cfg_samp_clk_timing(
                    fs, sample_mode=nid.constants.AcquisitionType.FINITE, samps_per_chan=n_ai
                )
                ai.triggers.start_trigger.cfg_dig_edge_start_trig(f"/{self.device}/ao/StartTrigger")
                z_task = self._start_z_ramp(path, "approach_z")
                reader = self._reader(ai)
                ai.start()
                z_task.start()
                t_start = time.monotonic()
                self._z_ramp = (t_start, path)
                chunk = max(1, int(round(fs * APPROACH_CHUNK_S)))
                while got < n_ai:
                    if abort.is_set():
                        reason = "aborted"
                        break
                    k = min(chunk, n_ai - got)
                    try:
                        reader.read_many_sample(i_v[got : got + k], k, timeout=k / fs + 2.0)
                    except nid.errors.DaqError:
                        if abort.is_set():
                            reason = "aborted"
                            break
                        raise
                    new = i_v[got : got + k] / self.gain
                    hit = watch.feed(new)
                    # published as the trace will hold them (up to the
                    # sample that confirms a contact)
                    pub = k if hit is None else min(k, hit + run - got)
                    t_new = (got + np.arange(pub)) / fs
                    self._progress.add(t_new, self._z_at(t_new, z0, path), new[:pub])
                    got += k
                    self._last_current = float(new[-1])
                    if hit is not None:
                        z_task.stop()  # Z holds where the last update left it
                        reason = "contact"
                        break
                if z_task is not None and reason != "contact":
                    with contextlib.suppress(nid.errors.DaqError):
                        z_task.stop()
                k_gen, z_final = self._z_generated(z_task, path)
        except DAQError:
            if self._lost or not abort.is_set():
                raise
            # the emergency stop cleared the tasks: Z stopped about where the
            # ramp had got to
            reason, k_gen, z_final = "aborted", 0, self.get_z_um(probe)
        finally:
            self._z_ramp = None
            self._progress.reset()  # its samples are the result's now
            self._end()
        self._z_um = z_final
        t = np.arange(got) / fs
        z_at = self._z_at(t, z0, path)
        trace = np.vstack((t, z_at, i_v[:got] / self.gain))
        contact_z = math.nan
        latency = math.nan
        if hit is not None:
            contact_z = float(z_at[hit])
            latency = k_gen / Z_RATE_HZ - hit / fs
            self.last_detection_latency_s = latency
            trace = trace[:, : hit + run]
        return {
            "contact": hit is not None,
            "contact_z_um": contact_z,
            "final_z_um": float(z_final),
            "duration_s": float(time.monotonic() - t_start),
            "reason": reason,
            "trace": trace,
            "detection_latency_s": latency,
        }

    def approach_progress(self, probe: str) -> np.ndarray:
        """Rows [t_s, z_um, I_A] of the approach in progress read so far (a
        block of APPROACH_CHUNK_S at a time; empty when none runs)."""
        return self._progress.rows()

    @staticmethod
    def _z_at(t: np.ndarray, z0: float, path: np.ndarray) -> np.ndarray:
        """The commanded Z at times ``t`` after the ramp's start (sample k of
        the ramp is output at k / Z_RATE_HZ)."""
        k = np.floor(t * Z_RATE_HZ).astype(int)
        return np.where(k < path.size, path[np.clip(k, 0, path.size - 1)], path[-1])

    # ---------------------------------------------------- safety, life
    def emergency_stop(self) -> None:
        """Stop every task, the potential output to 0 V (the cell off), Z held
        where it is. Never hangs: each call has a short deadline, and once
        the server is found gone the rest is skipped."""
        self._cell_on = False
        with self._short_deadlines():
            try:
                for mon in list(self._monitors):
                    mon.close()
                self._stop_active()
                if not self._lost:
                    with self._lock:
                        self._write("pot", 0.0)
            except Exception as e:
                if self._is_connection_error(e) and not self._lost:
                    self._lost = self._lost_message("stopping everything", e)
                log.error("NI-DAQ emergency stop: %s", self._lost or e)
                raise DAQError(self._lost or str(e)) from e
        if self._lost:
            raise DAQError(self._lost)

    def cells_off(self) -> None:
        self._cell_on = False
        with self._short_deadlines(), contextlib.suppress(Exception), self._lock:
            self._write("pot", 0.0)

    def close(self) -> None:
        with self._short_deadlines():
            for mon in list(self._monitors):
                mon.close()
            for t in [*self._active, *self._static.values()]:
                with contextlib.suppress(Exception):
                    t.close()
        self._active, self._static = [], {}
        raw = getattr(self, "_raw_channel", None)
        if raw is not None:
            raw.close()


class NIDAQHub(SECCMHub):
    """An NI-DAQ board as the SECCM controller: potential AO, current AI (through
    a current amplifier), and the Z piezo amplifier's AO."""

    PERIPHERALS = (
        ("Potentiostat", "potential (AO) and current (AI through the current amplifier)"),
        ("PiezoZ", "Z piezo driven by the DAQ's AO through the piezo amplifier, with the approach"),
    )

    #: pre-init property -> (default, description, controller keyword)
    SETTINGS: ClassVar[dict[str, tuple[Any, str, str]]] = {
        "Device": ("Dev1", "NI-DAQmx device name (e.g. Dev1)", "device"),
        "GrpcAddress": (
            "",
            "host:port of the NI gRPC Device Server (empty: the NI-DAQmx driver on this computer)",
            "grpc_address",
        ),
        "PotentialChannel": (
            "ao0",
            "AO channel to the potentiostat's potential input",
            "potential_channel",
        ),
        "CurrentChannel": (
            "ai0",
            "AI channel from the current amplifier's output",
            "current_channel",
        ),
        "PotentialGain_V_per_V": (
            1.0,
            "cell potential per volt of the potential AO, V/V",
            "potential_gain",
        ),
        "AmplifierGain_V_per_A": (
            1e9,
            "the current amplifier's gain (its feedback resistance), V/A",
            "gain_V_per_A",
        ),
        "AIRange_V": (
            10.0,
            "largest AI range used, V (one of 0.1, 0.2, 0.5, 1, 2, 5, 10); the current ranges "
            "are the AI ranges / the gain",
            "ai_range_V",
        ),
        "ZChannel": (
            "ao1",
            "AO channel to the Z piezo amplifier's input (empty: no Z)",
            "z_channel",
        ),
        "ZScale_um_per_V": (
            10.0,
            "Z piezo amplifier: um of Z per volt of input",
            "z_scale_um_per_V",
        ),
        "ZOffset_um": (0.0, "Z at 0 V on the Z channel, um", "z_offset_um"),
        "ZSlew_um_per_s": (
            1000.0,
            "fastest Z command (moves and approaches), um/s",
            "z_slew_um_s",
        ),
        "ZMinOutput_V": (0.0, "lowest voltage the Z channel may output, V", "z_min_output_V"),
        "ZMaxOutput_V": (
            10.0,
            "highest voltage the Z channel may output, V (Z goes there on initialization: retracted)",
            "z_max_output_V",
        ),
    }

    def __init__(self) -> None:
        super().__init__()
        for name, (default, desc, _) in self.SETTINGS.items():
            register(self, name, default, desc, is_pre_init=True)
        register(
            self,
            "DetectionLatency_s",
            0.0,
            "the last approach's detection latency: from the first sample over the threshold "
            "to the last Z update, s (NaN before any contact)",
            is_read_only=True,
            getter=lambda d: (
                d.controller.last_detection_latency_s if d.controller is not None else math.nan
            ),
        )

    def make_controller(self) -> NIDAQController:
        kw: dict[str, Any] = {}
        for name, (default, _, key) in self.SETTINGS.items():
            v = self.get_property_value(name)
            kw[key] = type(default)(v) if not isinstance(default, str) else str(v).strip()
        return NIDAQController(**kw)


__all__ = [
    "CurrentMonitor",
    "DAQError",
    "NIDAQController",
    "NIDAQHub",
    "PiezoZ",
    "Potentiostat",
]
