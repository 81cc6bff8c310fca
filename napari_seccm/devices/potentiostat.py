"""``Potentiostat``: the SECCM's potential control and current amplifier.

Micro-Manager has no analog-signal device type, so this is a Generic device
(a peripheral of a controller hub) whose properties are the instrument's
controls. Waveform acquisition is hardware-timed, so no caller polls
``Current_A`` sample by sample:

1. set ``Waveform`` to a JSON list of segments
   (``[{"hold": 1.0, "t": 0.1}, {"ramp": [0.0, 1.0], "t": 0.5}]``, V and s);
2. set ``Acquire`` to ``Run``: it starts and returns at once; the device is
   busy until the program has ended (``Acquire`` = ``Abort`` ends it early:
   Micro-Manager's ``stop`` is for stages only);
3. read ``LastTrace``: rows ``[t_s, E_V, I_A]`` sampled at ``SampleRate_Hz``
   (a numpy array on UniMMCore); its end is announced as a change of
   ``LastTrace_Samples`` through the core's events.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import GenericDevice, pymm_property

from ..model.program import Program
from ._async import OperationAborted
from ._base import HubPeripheral, check_range, register

#: the compliance of the potential, V (vs the quasi-reference counter electrode)
COMPLIANCE_V = (-5.0, 5.0)


#: the most samples one acquisition may record
MAX_SAMPLES = 10_000_000


def _check_samples(duration_s: float, rate_hz: float) -> None:
    n = duration_s * rate_hz
    if n > MAX_SAMPLES:
        raise ValueError(
            f"waveform of {duration_s:g} s at {rate_hz:g} Hz is {n:.3g} samples; "
            f"the maximum is {MAX_SAMPLES:.0e} samples"
        )


class Potentiostat(HubPeripheral, GenericDevice):
    """SECCM potentiostat: potential (V), current (A), range, filter, waveforms."""

    def __init__(self) -> None:
        super().__init__()
        register(
            self,
            "Channel",
            "A",
            "which channel of the controller this potentiostat is (A; B for a second probe)",
            is_pre_init=True,
        )
        self._cell = "Off"
        self._potential = 0.0
        self._range = 1e-8
        self._filter = 1000.0
        self._rate = 5000.0
        self._program = Program.chronoamperometry(1.0, 0.1)
        self._waveform = self._program.to_json()
        self._trace = np.empty((3, 0))

    def resource(self) -> tuple[str, str]:
        return ("channel", str(self.get_property_value("Channel")))

    def _ranges(self) -> tuple[float, ...]:
        """The controller's current ranges, A."""
        return tuple(self.controller.current_ranges_A)

    @property
    def channel(self) -> str:
        """The controller's name of this channel (pre-init: fixed once initialized)."""
        return self._channel

    def initialize(self) -> None:
        super().initialize()
        self._channel = str(self.get_property_value("Channel"))
        self._push_amplifier()
        self.controller.set_cell(self.channel, False)
        self.controller.set_potential(self.channel, self._potential)

    def shutdown(self) -> None:
        if self._hub is not None:
            self.worker.abort()
            with contextlib.suppress(Exception):
                self.controller.set_cell(self.channel, False)
        super().shutdown()

    def on_emergency_stop(self) -> None:
        self._cell = "Off"
        self.controller.set_cell(self.channel, False)

    def _push_amplifier(
        self,
        range_A: float | None = None,
        filter_hz: float | None = None,
        rate_hz: float | None = None,
    ) -> None:
        """Send the settings with one candidate changed; kept only if the
        amplifier accepts them (a refused value changes nothing)."""
        if (range_A, filter_hz, rate_hz) != (None, None, None):
            self._refuse_while_busy("changing the amplifier's settings")
        r = self._range if range_A is None else range_A
        f = self._filter if filter_hz is None else filter_hz
        s = self._rate if rate_hz is None else rate_hz
        self.controller.configure(self.channel, range_A=r, filter_hz=f, sample_rate_hz=s)
        self._range, self._filter, self._rate = r, f, s

    @pymm_property(allowed_values=("Off", "On"))
    def Cell(self) -> str:
        """Cell connection: Off (open circuit, no current) or On."""
        return self._cell

    @Cell.setter
    def Cell(self, value: str) -> None:
        if value == "On":
            self.hub.check_not_latched(self.get_label(), "switching the cell on")
        self.controller.set_cell(self.channel, value == "On")
        self._cell = value

    @pymm_property(limits=COMPLIANCE_V)
    def Potential_V(self) -> float:
        """Applied potential, V (vs Li/Li+ QRCE); limited to the compliance."""
        return self._potential

    @Potential_V.setter
    def Potential_V(self, value: float) -> None:
        self._refuse_while_busy(f"setting the potential to {float(value):g} V")
        self.controller.set_potential(self.channel, float(value))
        self._potential = float(value)

    @pymm_property(is_read_only=True)
    def Current_A(self) -> float:
        """One reading of the current, A (for monitoring; scans use waveforms)."""
        return self.controller.read_current(self.channel)

    @pymm_property(is_read_only=True)
    def CurrentRanges_A(self) -> str:
        """The amplifier's current ranges, A, comma-separated (the values
        CurrentRange_A accepts; plans are checked against them)."""
        return ",".join(f"{r:g}" for r in self._ranges())

    @pymm_property(limits=(1e-12, 1e-3))
    def CurrentRange_A(self) -> float:
        """Full-scale current, A: one of 1e-10 ... 1e-6; readings beyond it saturate.

        The feedback resistor is 10 V / range (1e-8 A -> 1 GOhm).
        """
        return self._range

    @CurrentRange_A.setter
    def CurrentRange_A(self, value: float) -> None:
        ranges = self._ranges()
        match = [r for r in ranges if abs(float(value) / r - 1) < 1e-6]
        if not match:
            raise ValueError(
                f"CurrentRange_A {value!r} A is not a range of this amplifier; "
                f"choose one of {list(ranges)} A"
            )
        self._push_amplifier(range_A=match[0])

    @pymm_property(limits=(1.0, 50_000.0))
    def Filter_Hz(self) -> float:
        """Cut-off of the one-pole low-pass filter, Hz (at most half the sample rate)."""
        return self._filter

    @Filter_Hz.setter
    def Filter_Hz(self, value: float) -> None:
        check_range("Filter_Hz", float(value), 1.0, self._rate / 2, "Hz")
        self._push_amplifier(filter_hz=float(value))

    @pymm_property(limits=(100.0, 100_000.0))
    def SampleRate_Hz(self) -> float:
        """Samples per second of waveform acquisitions and approaches, Hz."""
        return self._rate

    @SampleRate_Hz.setter
    def SampleRate_Hz(self, value: float) -> None:
        check_range("SampleRate_Hz", float(value), 2 * self._filter, 100_000.0, "Hz")
        _check_samples(self._program.duration_s, float(value))
        self._push_amplifier(rate_hz=float(value))

    @pymm_property(is_read_only=True)
    def NoiseRMS_A(self) -> float:
        """Expected Johnson noise of the range and filter, A rms: sqrt(4kT ENBW / R_f)."""
        from ..simulation import physics

        return physics.thermal_noise_rms(
            10.0 / self._range, physics.one_pole_enbw(self._filter, self._rate)
        )

    @pymm_property
    def Waveform(self) -> str:
        """Potential program as JSON: [{"hold": V, "t": s} | {"ramp": [V0, V1], "t": s}]."""
        return self._waveform

    @Waveform.setter
    def Waveform(self, value: str) -> None:
        wf = Program.from_json(str(value))
        lo, hi = wf.potential_limits()
        check_range("Waveform potential", lo, *COMPLIANCE_V, "V")
        check_range("Waveform potential", hi, *COMPLIANCE_V, "V")
        _check_samples(wf.duration_s, self._rate)
        self._program, self._waveform = wf, wf.to_json()

    @pymm_property(allowed_values=("Idle", "Run", "Abort"))
    def Acquire(self) -> str:
        """Run: apply ``Waveform`` and record ``LastTrace`` (returns at once; busy
        until the program has ended). Abort: end it now (the trace ends there)."""
        return "Run" if self.busy() else "Idle"

    @Acquire.setter
    def Acquire(self, value: str) -> None:
        if value == "Abort":
            self.stop()
            return
        if value != "Run":
            return
        self.hub.check_not_latched(self.get_label(), "running a waveform")
        self._refuse_while_busy("running a waveform")
        # re-assert the settings: another client may have changed the controller's
        self._push_amplifier()
        ctrl, ch, program, label = self.controller, self.channel, self._program, self.get_label()
        ctrl.set_cell(ch, self._cell == "On")

        def done(trace: Any, error: BaseException | None) -> Any:
            # an aborted program keeps the samples it recorded (LastError says so)
            ok = trace is not None and (error is None or isinstance(error, OperationAborted))
            self._trace = trace if ok else np.empty((3, 0))
            if self._trace.shape[1] and self._cell == "On":
                self._potential = float(self._trace[1, -1])
            n = str(self._trace.shape[1])
            return lambda: self.core.events.propertyChanged.emit(label, "LastTrace_Samples", n)

        previous, self._trace = self._trace, np.empty((3, 0))
        try:
            self.start_operation(
                "running a waveform", lambda abort: ctrl.run_program(ch, program, abort), done
            )
        except BaseException:
            self._trace = previous  # a refused start changes nothing
            raise

    def _refuse_while_busy(self, what: str) -> None:
        """Settings may not change under a running program (the trace would be
        recorded with two settings and saved as one)."""
        if self.busy():
            raise RuntimeError(
                f"{self.get_label()}: {what} refused: a program is running "
                f"({self.worker.last_what}); wait for it or abort it (Acquire = Abort)"
            )

    @pymm_property(is_read_only=True, property_type=str)
    def LastTrace(self) -> Any:
        """The last acquisition: rows [t_s, E_V, I_A] (a numpy array)."""
        return self._trace

    @pymm_property(is_read_only=True)
    def LastTrace_Samples(self) -> int:
        """Number of samples in ``LastTrace``."""
        return int(self._trace.shape[1])
