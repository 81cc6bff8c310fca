"""A fake NI gRPC Device Server: the ``NiDAQmx`` service of an NI-DAQ board
wired to a current amplifier, a potential input and a Z piezo amplifier.

The unmodified ``nidaqmx`` client (``nidaqmx.Task(grpc_options=...)``) talks to
it over real gRPC on localhost; the service is the one defined by the
protobuf stubs shipped inside ``nidaqmx`` (``nidaqmx/_stubs``). It implements
the subset an SECCM potentiostat backend needs (tasks, AO/AI voltage channels,
sample clock timing, shared sample clock and start trigger, scalar and
buffered reads and writes, start/stop/clear, wait-until-done, the error
string and a few attributes); any other call answers ``UNIMPLEMENTED``, as an
old device server does.

The board runs in wall time: a started, hardware-timed task produces one
sample per tick of its sample clock, whether or not anyone reads it (a
background thread plays the clocks every ``tick_s``). Behind it sits a
:class:`~.world.FakeWorld` (probe channel ``A``):

- the potential AO channel's volts x ``potential_scale`` is the cell potential;
- the AI channel reads the cell current x ``gain_V_per_A`` (the current
  amplifier), clipped at the channel's range;
- the Z AO channel drives the piezo amplifier: Z = ``z_offset_um`` +
  ``z_um_per_V`` x volts, reached at the world's Z axis speed (``z_slew_um_s``).

An AO output holds its last value when its task stops, is cleared, or the
server goes away, as a DAQ's DAC does.

Fault knobs: :meth:`inject_error` (a DAQmx error, a negative code with NI's
message, returned for a call the way the device server returns it: gRPC
status ``UNKNOWN`` and the code in the ``ni-error`` trailer), :meth:`hang`
(the server accepts calls and never answers them) and :meth:`stop` (the
connection drops: calls in flight fail, the board keeps its outputs).
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from nidaqmx._stubs import nidaqmx_pb2 as pb
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc
from session_pb2 import Session

from .world import FakeWorld

#: DAQmx error messages of the codes this fake returns (from NI-DAQmx)
ERROR_MESSAGES: dict[int, str] = {
    -50103: "The specified resource is reserved. The operation could not be completed as specified.",
    -200284: "Some or all of the samples requested have not yet been acquired.",
    -200279: "The application is not able to keep up with the hardware acquisition.",
    -200560: "Wait Until Done did not indicate that the task was done within the specified timeout.",
    -201003: "Device cannot be accessed.  Possible causes: Device is no longer present in the "
    "system. Device is not powered. Device is powered, but was temporarily without power.",
    -200088: "Task specified is invalid or does not exist.",
    -200077: "Requested value is not a supported value for this property. The property value may "
    "be invalid because it conflicts with another property.",
    -200431: "Physical channel specified does not exist on this device.",
    -200018: "DAC conversion attempted before data to be converted was available.",
}

# attribute ids (NI-DAQmx C API)
_SYS_DEV_NAMES = 0x193B
_SYS_VER_MAJOR, _SYS_VER_MINOR, _SYS_VER_UPDATE = 0x1272, 0x1923, 0x2F22
_DEV_PRODUCT_TYPE = 0x0631
_TASK_NAME = 0x1276
_TASK_NUM_CHANS = 0x2181
_TASK_COMPLETE = 0x1274
_READ_AVAIL = 0x1223
_READ_TOTAL = 0x192A
_WRITE_TOTAL = 0x192B
_FINITE, _CONTINUOUS = 10178, 10123


class _Fault(Exception):
    """A DAQmx error to return for the call being served."""

    def __init__(self, code: int, message: str = "", **trailer: int) -> None:
        super().__init__(message or ERROR_MESSAGES.get(code, "DAQmx error"))
        self.code = code
        self.trailer = trailer


@dataclass
class _Task:
    name: str
    kind: str = ""  # "ao" or "ai", by its first channel
    chans: list[tuple[str, float, float]] = field(default_factory=list)  # (phys, min, max)
    timed: bool = False
    rate: float = 0.0
    finite: bool = True
    n: int = 0
    clock_src: str = ""
    trig_src: str = ""
    state: str = "idle"  # idle, armed, running, done
    t0: float = 0.0
    buf: np.ndarray = field(default_factory=lambda: np.empty(0))
    produced: int = 0  # samples generated (AO) or acquired (AI)
    data: list[np.ndarray] = field(default_factory=list)  # AI volts not yet read
    avail: int = 0
    master: _Task | None = None

    @property
    def phys(self) -> str:
        return self.chans[0][0] if self.chans else ""


def _chan_key(phys: str) -> str:
    """'Dev1/ao0' or '/Dev1/ao0' -> 'dev1/ao0'."""
    return phys.strip().strip("/").lower()


class _Servicer(pb_grpc.NiDAQmxServicer):
    """The NiDAQmx service; every call goes through :meth:`_serve`."""

    def __init__(self, fake: FakeNIDAQServer) -> None:
        self.f = fake

    def _serve(self, name: str, context: Any, fn: Any, locked: bool = True) -> Any:
        """Serve one call: hang if told to, return an injected error, else run
        ``fn`` (under the board's lock unless it waits on the clock itself)."""
        f = self.f
        f.calls.append(name)
        while f._hanging.is_set() and not f._stopped.is_set() and context.is_active():
            time.sleep(0.01)
        err = f._take_error(name)
        try:
            if err is not None:
                raise err
            if not locked:
                return fn()
            with f.lock:
                f._advance()
                return fn()
        except _Fault as e:
            meta = [("ni-error", str(e.code))]
            meta += [(f"ni-{k.replace('_', '-')}", str(v)) for k, v in e.trailer.items()]
            context.set_trailing_metadata(tuple(meta))
            context.abort(grpc.StatusCode.UNKNOWN, str(e))

    # ---------------------------------------------------------- system
    def GetSystemInfoAttributeUInt32(self, request: Any, context: Any) -> Any:
        versions = {_SYS_VER_MAJOR: 24, _SYS_VER_MINOR: 0, _SYS_VER_UPDATE: 0}
        return self._serve(
            "GetSystemInfoAttributeUInt32",
            context,
            lambda: pb.GetSystemInfoAttributeUInt32Response(
                value=versions.get(request.attribute_raw, 0)
            ),
        )

    def GetSystemInfoAttributeString(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            if request.attribute_raw != _SYS_DEV_NAMES:
                raise _Fault(-200077)
            return pb.GetSystemInfoAttributeStringResponse(value=self.f.device)

        return self._serve("GetSystemInfoAttributeString", context, fn)

    def GetDeviceAttributeString(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            if request.device_name.lower() != self.f.device.lower():
                raise _Fault(-200220, "Device identifier is invalid.")
            if request.attribute_raw != _DEV_PRODUCT_TYPE:
                raise _Fault(-200077)
            return pb.GetDeviceAttributeStringResponse(value=self.f.product)

        return self._serve("GetDeviceAttributeString", context, fn)

    def GetErrorString(self, request: Any, context: Any) -> Any:
        msg = ERROR_MESSAGES.get(request.error_code, "")
        return self._serve(
            "GetErrorString", context, lambda: pb.GetErrorStringResponse(error_string=msg)
        )

    # ------------------------------------------------------------ tasks
    def CreateTask(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            f = self.f
            name = request.session_name or f"_unnamedTask<{len(f.tasks)}>"
            if name in f.tasks and request.initialization_behavior == 1:
                raise _Fault(-200089, "Task name specified conflicts with an existing task name.")
            f.tasks[name] = _Task(name)
            return pb.CreateTaskResponse(task=Session(name=name), new_session_initialized=True)

        return self._serve("CreateTask", context, fn)

    def _task(self, session: Any) -> _Task:
        t = self.f.tasks.get(session.name)
        if t is None:
            raise _Fault(-200088)
        return t

    def GetTaskAttributeString(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if request.attribute_raw != _TASK_NAME:
                raise _Fault(-200077)
            return pb.GetTaskAttributeStringResponse(value=t.name)

        return self._serve("GetTaskAttributeString", context, fn)

    def GetTaskAttributeUInt32(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if request.attribute_raw != _TASK_NUM_CHANS:
                raise _Fault(-200077)
            return pb.GetTaskAttributeUInt32Response(value=len(t.chans))

        return self._serve("GetTaskAttributeUInt32", context, fn)

    def GetTaskAttributeBool(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if request.attribute_raw != _TASK_COMPLETE:
                raise _Fault(-200077)
            return pb.GetTaskAttributeBoolResponse(value=t.state in ("idle", "done"))

        return self._serve("GetTaskAttributeBool", context, fn)

    def _add_chan(self, kind: str, request: Any) -> None:
        f = self.f
        t = self._task(request.task)
        phys = _chan_key(request.physical_channel)
        dev, _, ch = phys.partition("/")
        known = f.ao_channels if kind == "ao" else f.ai_channels
        if dev != f.device.lower() or ch not in known:
            raise _Fault(-200431, f"{ERROR_MESSAGES[-200431]}\n\nPhysical Channel Name: {phys}")
        lo, hi = request.min_val, request.max_val
        ranges = f.ao_ranges_V if kind == "ao" else f.ai_ranges_V
        if not any(-r <= lo and hi <= r for r in ranges) or lo >= hi:
            raise _Fault(
                -200077,
                f"{ERROR_MESSAGES[-200077]}\n\nProperty: Maximum Value\nRequested Value: {hi:g}\n"
                f"Possible Values: {ranges}",
            )
        if t.kind and t.kind != kind:
            raise _Fault(-200559, "Task cannot contain a channel of the specified type.")
        t.kind = kind
        t.chans.append((phys, lo, hi))

    def CreateAOVoltageChan(self, request: Any, context: Any) -> Any:
        return self._serve(
            "CreateAOVoltageChan",
            context,
            lambda: (self._add_chan("ao", request), pb.CreateAOVoltageChanResponse())[1],
        )

    def CreateAIVoltageChan(self, request: Any, context: Any) -> Any:
        return self._serve(
            "CreateAIVoltageChan",
            context,
            lambda: (self._add_chan("ai", request), pb.CreateAIVoltageChanResponse())[1],
        )

    def CfgSampClkTiming(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if not 0 < request.rate <= self.f.max_rate_hz:
                raise _Fault(
                    -200077,
                    f"{ERROR_MESSAGES[-200077]}\n\nProperty: Sample Clock Rate\n"
                    f"Requested Value: {request.rate:g}\nMaximum Value: {self.f.max_rate_hz:g}",
                )
            t.timed, t.rate = True, float(request.rate)
            t.finite = request.sample_mode_raw != _CONTINUOUS
            t.n = int(request.samps_per_chan)
            t.clock_src = request.source
            return pb.CfgSampClkTimingResponse()

        return self._serve("CfgSampClkTiming", context, fn)

    def CfgDigEdgeStartTrig(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            self._task(request.task).trig_src = request.trigger_source
            return pb.CfgDigEdgeStartTrigResponse()

        return self._serve("CfgDigEdgeStartTrig", context, fn)

    def TaskControl(self, request: Any, context: Any) -> Any:
        return self._serve(
            "TaskControl",
            context,
            lambda: (self._task(request.task), pb.TaskControlResponse())[1],
        )

    def StartTask(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            self.f._start(self._task(request.task))
            return pb.StartTaskResponse()

        return self._serve("StartTask", context, fn)

    def StopTask(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if t.state in ("running", "armed"):
                t.state = "done"
            return pb.StopTaskResponse()

        return self._serve("StopTask", context, fn)

    def ClearTask(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            t.state = "done"
            self.f.tasks.pop(t.name, None)
            return pb.ClearTaskResponse()

        return self._serve("ClearTask", context, fn)

    def WaitUntilTaskDone(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            wait = request.time_to_wait
            t_end = time.monotonic() + (wait if wait >= 0 else 1e9)
            while True:
                with self.f.lock:
                    self.f._advance()
                    if t.state not in ("running", "armed"):
                        return pb.WaitUntilTaskDoneResponse()
                if time.monotonic() >= t_end:
                    raise _Fault(-200560)
                self.f._wait_tick()

        return self._serve("WaitUntilTaskDone", context, fn, locked=False)

    def IsTaskDone(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            return pb.IsTaskDoneResponse(is_task_done=t.state not in ("running", "armed"))

        return self._serve("IsTaskDone", context, fn)

    # ------------------------------------------------------ reads/writes
    def WriteAnalogScalarF64(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if t.timed:
                raise _Fault(-200018)
            self.f._output(t.phys, request.value)
            t.state = "running"
            return pb.WriteAnalogScalarF64Response()

        return self._serve("WriteAnalogScalarF64", context, fn)

    def WriteAnalogF64(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            data = np.asarray(request.write_array, float)
            n = int(request.num_samps_per_chan)
            if not t.timed:
                if n:
                    self.f._output(t.phys, float(data[n - 1]))
                return pb.WriteAnalogF64Response(samps_per_chan_written=n)
            lo, hi = t.chans[0][1], t.chans[0][2]
            if data.size and (data.min() < lo or data.max() > hi):
                raise _Fault(
                    -200561, "Attempted writing analog data that is too large or too small."
                )
            t.buf = data[:n].copy()
            if request.auto_start:
                self.f._start(t)
            return pb.WriteAnalogF64Response(samps_per_chan_written=n)

        return self._serve("WriteAnalogF64", context, fn)

    def ReadAnalogScalarF64(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if t.timed:
                raise _Fault(-200473, "Read cannot be performed when the task is timed.")
            return pb.ReadAnalogScalarF64Response(value=float(self.f._on_demand_ai(t, 1)[0]))

        return self._serve("ReadAnalogScalarF64", context, fn)

    def ReadAnalogF64(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            f = self.f
            t = self._task(request.task)
            n = int(request.num_samps_per_chan)
            if not t.timed:
                return pb.ReadAnalogF64Response(
                    read_array=f._on_demand_ai(t, max(n, 1)), samps_per_chan_read=max(n, 1)
                )
            with f.lock:
                if t.state == "idle":
                    f._start(t)  # a read auto-starts an AI task
            wait = request.timeout
            t_end = time.monotonic() + (wait if wait >= 0 else 1e9)
            while True:
                with f.lock:
                    f._advance()
                    if n < 0:
                        n = t.avail
                    if t.avail >= n:
                        out = f._take(t, n)
                        return pb.ReadAnalogF64Response(read_array=out, samps_per_chan_read=n)
                    if t.state == "done":
                        # the task has ended (finite, or stopped): no more samples
                        got = f._take(t, t.avail)
                        raise _Fault(
                            -200278,
                            "Attempted to read a sample beyond the final sample acquired.",
                            samps_per_chan_read=got.size,
                        )
                if time.monotonic() >= t_end:
                    with f.lock:
                        got = f._take(t, t.avail)
                    raise _Fault(-200284, samps_per_chan_read=got.size)
                f._wait_tick()

        return self._serve("ReadAnalogF64", context, fn, locked=False)

    def GetReadAttributeUInt32(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if request.attribute_raw != _READ_AVAIL:
                raise _Fault(-200077)
            return pb.GetReadAttributeUInt32Response(value=t.avail)

        return self._serve("GetReadAttributeUInt32", context, fn)

    def GetReadAttributeUInt64(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if request.attribute_raw != _READ_TOTAL:
                raise _Fault(-200077)
            return pb.GetReadAttributeUInt64Response(value=t.produced)

        return self._serve("GetReadAttributeUInt64", context, fn)

    def GetWriteAttributeUInt64(self, request: Any, context: Any) -> Any:
        def fn() -> Any:
            t = self._task(request.task)
            if request.attribute_raw != _WRITE_TOTAL:
                raise _Fault(-200077)
            return pb.GetWriteAttributeUInt64Response(value=t.produced)

        return self._serve("GetWriteAttributeUInt64", context, fn)


class FakeNIDAQServer:
    """A fake NI gRPC Device Server for one DAQ board (``device``), backed by a
    :class:`FakeWorld`. ``start()`` serves on a free localhost port and returns
    its address ``"127.0.0.1:port"``; ``stop()`` drops every connection.

    The wiring (which must match the backend's settings): ``potential_channel``
    (AO) -> cell potential x ``potential_scale``; the cell current x
    ``gain_V_per_A`` -> ``current_channel`` (AI); ``z_channel`` (AO) -> the
    piezo amplifier: Z = ``z_offset_um`` + ``z_um_per_V`` x volts, slewing at
    ``z_slew_um_s``.
    """

    def __init__(
        self,
        world: FakeWorld | None = None,
        *,
        device: str = "Dev1",
        product: str = "PCIe-6363",
        potential_channel: str = "ao0",
        current_channel: str = "ai0",
        z_channel: str = "ao1",
        potential_scale: float = 1.0,
        gain_V_per_A: float = 1e9,
        z_um_per_V: float = 10.0,
        z_offset_um: float = 0.0,
        z_slew_um_s: float = 2000.0,
        max_rate_hz: float = 1e6,
        tick_s: float = 0.0005,
    ) -> None:
        self.world = world if world is not None else FakeWorld()
        self.device = device
        self.product = product
        self.ao_channels = ("ao0", "ao1", "ao2", "ao3")
        self.ai_channels = tuple(f"ai{i}" for i in range(16))
        self.ao_ranges_V = (10.0, 5.0)
        self.ai_ranges_V = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
        self.potential_channel = _chan_key(f"{device}/{potential_channel}")
        self.current_channel = _chan_key(f"{device}/{current_channel}")
        self.z_channel = _chan_key(f"{device}/{z_channel}") if z_channel else ""
        self.potential_scale = potential_scale
        self.gain_V_per_A = gain_V_per_A
        self.z_um_per_V = z_um_per_V
        self.z_offset_um = z_offset_um
        self.max_rate_hz = max_rate_hz
        self.tick_s = tick_s
        self.lock = threading.RLock()
        self.tasks: dict[str, _Task] = {}
        #: names of the calls served, in order (for tests and diagnostics)
        self.calls: list[str] = []
        #: the cell current (A) behind the samples of the last timed AI task
        self.served_current_A: list[np.ndarray] = []
        self._errors: list[tuple[str, int, str, int]] = []
        self._hanging = threading.Event()
        self._stopped = threading.Event()
        self._server: grpc.Server | None = None
        self._ticker: threading.Thread | None = None
        self._tick = threading.Condition(self.lock)
        w = self.world
        w.axes["Z"].velocity_um_s = z_slew_um_s
        w.axes["Z"].max_velocity_um_s = max(z_slew_um_s, w.axes["Z"].max_velocity_um_s)
        # the AO drives the cell directly (no relay): the cell is connected
        w.set_cell("A", True)
        # the current amplifier's feedback resistor is its gain (10 V full scale)
        with w.lock:
            w.rig.probe("A").amplifier.range_A = 10.0 / gain_V_per_A
        self.outputs: dict[str, float] = dict.fromkeys(self.ao_channels, 0.0)
        self.outputs[self.potential_channel.split("/")[1]] = 0.0
        w.set_potential("A", 0.0)
        if self.z_channel:
            z_ch = self.z_channel.split("/")[1]
            self.outputs[z_ch] = (w.position("Z") - z_offset_um) / z_um_per_V

    # ------------------------------------------------------------- life
    def start(self) -> str:
        """Serve on a free port of 127.0.0.1; the address 'host:port'."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            options=[
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ],
        )
        pb_grpc.add_NiDAQmxServicer_to_server(_Servicer(self), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self._stopped.clear()
        self._ticker = threading.Thread(target=self._run_clock, name="fake DAQ clock", daemon=True)
        self._ticker.start()
        self.address = f"127.0.0.1:{port}"
        return self.address

    def stop(self) -> None:
        """Drop the server: calls in flight fail, new ones find nobody. The
        board keeps its outputs (the last AO values) and its clocks stop."""
        self._stopped.set()
        self._hanging.clear()
        if self._server is not None:
            self._server.stop(grace=None).wait(2.0)
            self._server = None
        if self._ticker is not None:
            self._ticker.join(1.0)
            self._ticker = None

    def __enter__(self) -> FakeNIDAQServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------ fault knobs
    def inject_error(
        self, call: str, code: int = -50103, message: str = "", count: int = 1
    ) -> None:
        """Return DAQmx error ``code`` for the next ``count`` calls named
        ``call`` (an RPC name, e.g. ``"StartTask"``, or ``"*"`` for any)."""
        msg = message or ERROR_MESSAGES.get(code, "DAQmx error")
        with self.lock:
            self._errors.append((call, int(code), msg, int(count)))

    def hang(self, on: bool = True) -> None:
        """Stop answering (calls block until ``hang(False)`` or ``stop()``)."""
        if on:
            self._hanging.set()
        else:
            self._hanging.clear()

    def _take_error(self, call: str) -> _Fault | None:
        with self.lock:
            for i, (name, code, msg, count) in enumerate(self._errors):
                if name in (call, "*"):
                    if count <= 1:
                        del self._errors[i]
                    else:
                        self._errors[i] = (name, code, msg, count - 1)
                    return _Fault(code, msg)
        return None

    # ------------------------------------------------------ observation
    def ao_volts(self, channel: str) -> float:
        """The present output of an AO channel ('ao0'), V."""
        with self.lock:
            self._advance()
            return self.outputs[channel]

    def running_tasks(self) -> list[str]:
        """The hardware-timed tasks running or armed now (an on-demand task
        only holds its output)."""
        with self.lock:
            self._advance()
            return [
                t.name for t in self.tasks.values() if t.timed and t.state in ("running", "armed")
            ]

    # --------------------------------------------------------- hardware
    def _run_clock(self) -> None:
        while not self._stopped.wait(self.tick_s):
            with self.lock:
                self._advance()
                self._tick.notify_all()

    def _wait_tick(self) -> None:
        with self.lock:
            self._tick.wait(0.002)

    def _output(self, phys: str, volts: float) -> None:
        """An AO channel's output changes to ``volts``."""
        ch = phys.split("/")[1]
        self.outputs[ch] = float(volts)
        w = self.world
        if phys == self.potential_channel:
            w.set_potential("A", volts * self.potential_scale)
        elif phys == self.z_channel:
            w.move("Z", self.z_offset_um + self.z_um_per_V * volts)

    def _start(self, t: _Task) -> None:
        if t.state in ("running", "armed"):
            raise _Fault(
                -200479, "Specified operation cannot be performed while the task is running."
            )
        if t.timed and t.kind == "ao" and t.buf.size == 0:
            raise _Fault(
                -200462, "Generation cannot be started, because the output buffer is empty."
            )
        t.produced, t.avail, t.data = 0, 0, []
        if t.kind == "ai":
            self.served_current_A = []
        slaved = "ao/" in t.clock_src.lower() or "ao/" in t.trig_src.lower()
        if t.kind == "ai" and slaved:
            t.state = "armed"  # starts with the AO task of this board
            return
        t.state = "running"
        t.t0 = time.monotonic()
        if t.kind == "ao":
            for other in self.tasks.values():
                if other.state == "armed":
                    other.state, other.t0, other.master = "running", t.t0, t
                    if "ao/" in other.clock_src.lower():
                        other.rate = t.rate

    def _advance(self) -> None:
        """Play every running task's sample clock up to now (the lock is held)."""
        now = time.monotonic()
        for t in [t for t in self.tasks.values() if t.timed and t.state == "running"]:
            if t.kind != "ao":
                continue
            due = int((now - t.t0) * t.rate)
            if t.finite:
                due = min(due, t.n, t.buf.size)
            if due > t.produced:
                k = due - 1
                v = float(t.buf[k % t.buf.size])
                t.produced = due
                self._output(t.phys, v)
            if t.finite and t.produced >= min(t.n, t.buf.size):
                t.state = "done"
        for t in [t for t in self.tasks.values() if t.timed and t.state == "running"]:
            if t.kind == "ai":
                self._acquire(t, now)

    def _acquire(self, t: _Task, now: float) -> None:
        due = int((now - t.t0) * t.rate)
        m = t.master
        if m is not None and "ao/" in t.clock_src.lower():
            due = min(due, m.produced)  # no AO clock edges once the AO has ended
        if t.finite:
            due = min(due, t.n)
        new = due - t.produced
        if new > 0:
            phys, lo, hi = t.chans[0]
            w = self.world
            if m is not None and m.phys == self.potential_channel and m.buf.size:
                idx = np.arange(t.produced, due) % m.buf.size
                e = m.buf[idx] * self.potential_scale
                # on the board's clock: sample k at t0 + k / rate
                i = w.waveform("A", e, t.rate, t.t0 + t.produced / t.rate)[2]
            else:
                i = w.sample_current("A", new, t.rate, t.t0 + t.produced / t.rate)
            if phys == self.current_channel:
                self.served_current_A.append(np.asarray(i, float))
                v = np.clip(i * self.gain_V_per_A, lo, hi)
            else:
                v = np.zeros(new)
            t.data.append(v)
            t.avail += new
            t.produced = due
        if t.finite and t.produced >= t.n:
            t.state = "done"

    def _take(self, t: _Task, n: int) -> np.ndarray:
        allv = np.concatenate(t.data) if t.data else np.empty(0)
        out, rest = allv[:n], allv[n:]
        t.data = [rest] if rest.size else []
        t.avail = rest.size
        return out

    def _on_demand_ai(self, t: _Task, n: int) -> np.ndarray:
        phys, lo, hi = t.chans[0]
        if phys != self.current_channel:
            return np.zeros(n)
        i = self.world.sample_current("A", n, 10_000.0)
        return np.clip(i * self.gain_V_per_A, lo, hi)


__all__ = ["ERROR_MESSAGES", "FakeNIDAQServer"]
