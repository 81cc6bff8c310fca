"""The world behind the fake instruments: one simulated cell and stage, in wall time.

Each fake instrument (a PI controller speaking GCS, a potentiostat speaking
MethodSCRIPT, an NI-DAQ device server) is a protocol-level stand-in for the
real box; the physics behind all of them in one process is one
:class:`FakeWorld`: a :class:`~napari_seccm.simulation.rig.SimulatedRig` (film,
pipette, droplet, amplifier noise) and stage axes that move at finite speeds in
*wall* time, as a real piezo does. The PI fake moves the axes, the DAQ or the
potentiostat fake reads the current at wherever the probe is when it samples:
the rig is brought to the axes' present positions first (the droplet lands,
is dragged, detaches or the pipette crashes on the way, as in the simulator).

Numbers: um, um/s, V, A, s. Thread-safe (every fake serves its clients on
threads of its own).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..simulation.rig import SimulatedRig

#: the axes of the world's stage: X, Y (the sample stage) and Z (probe A's height)
AXES = ("X", "Y", "Z")


@dataclass
class Axis:
    """One closed-loop piezo axis: position ramps to the target at the
    velocity, then settles (``on_target`` after ``settle_s``)."""

    name: str
    low_um: float
    high_um: float
    position_um: float = 0.0
    velocity_um_s: float = 100.0
    max_velocity_um_s: float = 2000.0
    settle_s: float = 0.002
    servo: bool = True
    _start_um: float = 0.0
    _target_um: float = 0.0
    _t0: float = 0.0
    _t_end: float = 0.0
    _clock: Any = field(default=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        self._start_um = self._target_um = self.position_um
        self._t0 = self._t_end = self._clock()

    def now_um(self, t: float | None = None) -> float:
        t = self._clock() if t is None else t
        if t >= self._t_end or self._t_end <= self._t0:
            return self._target_um
        f = (t - self._t0) / (self._t_end - self._t0)
        return self._start_um + (self._target_um - self._start_um) * f

    def moving(self, t: float | None = None) -> bool:
        t = self._clock() if t is None else t
        return t < self._t_end

    def on_target(self, t: float | None = None) -> bool:
        t = self._clock() if t is None else t
        return t >= self._t_end + self.settle_s

    def move(self, target_um: float) -> None:
        t = self._clock()
        p = self.now_um(t)
        v = max(min(self.velocity_um_s, self.max_velocity_um_s), 1e-9)
        self._start_um, self._target_um, self._t0 = p, float(target_um), t
        self._t_end = t + abs(target_um - p) / v

    def halt(self) -> None:
        t = self._clock()
        p = self.now_um(t)
        self._start_um = self._target_um = p
        self._t0 = self._t_end = t


class FakeWorld:
    """The simulated cell and stage shared by every fake instrument of a process."""

    def __init__(
        self,
        rig: SimulatedRig | None = None,
        *,
        xy_range_um: tuple[float, float] = (-100.0, 100.0),
        z_range_um: tuple[float, float] = (0.0, 100.0),
        z_start_um: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.rig = rig if rig is not None else SimulatedRig()
        self.lock = threading.RLock()
        self.clock = clock
        self.axes: dict[str, Axis] = {
            "X": Axis("X", *xy_range_um, position_um=self.rig.x_um, _clock=clock),
            "Y": Axis("Y", *xy_range_um, position_um=self.rig.y_um, _clock=clock),
            "Z": Axis("Z", *z_range_um, position_um=z_start_um, _clock=clock),
        }
        self.rig.move_z(z_start_um, "A", speed_um_s=1e9)
        self._synced = (self.rig.x_um, self.rig.y_um, z_start_um)
        self._t_synced = clock()
        # the amplifier's filter imports scipy.signal on first use (0.4-0.9 s):
        # now, not while a fake instrument is streaming samples it stamps with
        # their due times (a stall would put the state of its end on all of them)
        import scipy.signal  # noqa: F401

    # ----------------------------------------------------------- the stage
    def position(self, axis: str) -> float:
        with self.lock:
            return self.axes[axis].now_um()

    def sync(self, at: float | None = None) -> None:
        """Bring the rig to the axes' positions now, or at the time ``at``
        (landing, dragging, detaching and crashing happen here, as the probe
        passes). The rig never goes back in time: ``at`` before the last sync
        is the last sync's time."""
        with self.lock:
            t = self.clock() if at is None else max(float(at), self._t_synced)
            self._t_synced = t
            x, y, z = (self.axes[a].now_um(t) for a in AXES)
            rig = self.rig
            if (x, y) != self._synced[:2]:
                rig.move_xy(x, y)
            if z != self._synced[2]:
                v = self.axes["Z"].velocity_um_s
                rig.move_z(z, "A", speed_um_s=v)
            self._synced = (x, y, z)

    def move(self, axis: str, target_um: float) -> None:
        with self.lock:
            self.sync()
            self.axes[axis].move(target_um)

    def halt(self, axis: str | None = None) -> None:
        with self.lock:
            for a in [axis] if axis else list(self.axes):
                self.axes[a].halt()
            self.sync()

    def surface_um(self) -> float:
        """Where the film's surface is under the probe (for tests and logs)."""
        with self.lock:
            return self.rig.surface_um()

    def probe_state(self) -> str:
        with self.lock:
            self.sync()
            return self.rig.probe("A").state

    # ----------------------------------------------------- electrochemistry
    def set_potential(self, channel: str, volts: float) -> None:
        with self.lock:
            self.rig.set_potential(float(volts), channel)

    def set_cell(self, channel: str, on: bool) -> None:
        with self.lock:
            self.rig.probe(channel).cell_on = bool(on)

    def cell_on(self, channel: str) -> bool:
        with self.lock:
            return bool(self.rig.probe(channel).cell_on)

    def sample_current(
        self, channel: str, n: int, rate_hz: float, t0: float | None = None
    ) -> np.ndarray:
        """``n`` samples of the current at the present potential (A), as an
        ADC reads them at ``rate_hz`` (from the time ``t0``, see
        :meth:`waveform`; default: now)."""
        with self.lock:
            e = np.full(int(n), self.rig.probe(channel).potential_V)
            return self.waveform(channel, e, rate_hz, t0)[2]

    def waveform(
        self, channel: str, e: np.ndarray, rate_hz: float, t0: float | None = None
    ) -> np.ndarray:
        """Apply the potentials ``e`` (V) at ``rate_hz`` and read the current
        at each; returns [t_s, E_V, I_A] rows (the cell must be on for the
        potentials to reach it).

        ``t0``: the time (the world's clock) of the first sample. A fake that
        fell behind (a busy computer) computes a late block of samples with
        the probe where it was at each sample's time (in steps of 2 ms), not
        where it is when it catches up: a real instrument samples on its own
        clock, and a contact must not appear earlier than it happened."""
        e = np.asarray(e, float)
        rate = float(rate_hz)
        with self.lock:
            amp = self.rig.probe(channel).amplifier
            amp.sample_rate_hz = rate
            amp.filter_hz = min(amp.filter_hz, 0.45 * rate)
            if t0 is None:
                self.sync()
                return self.rig.acquire_samples(e, rate, channel)
            step = max(1, int(round(0.002 * rate)))
            parts = []
            for k in range(0, max(e.size, 1), step):
                self.sync(at=t0 + k / rate)
                parts.append(self.rig.acquire_samples(e[k : k + step], rate, channel))
            self.sync()
            return np.hstack(parts) if parts else np.empty((3, 0))

    def read_current(self, channel: str) -> float:
        with self.lock:
            fs = self.rig.probe(channel).amplifier.sample_rate_hz
            return float(self.sample_current(channel, 1, fs)[-1])

    def wait_until(self, cond: Any, timeout_s: float, poll_s: float = 0.001) -> bool:
        """Wait (wall time) until ``cond()`` is true; False on the timeout."""
        t_end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() >= t_end:
                return False
            time.sleep(poll_s)
        return True


__all__ = ["AXES", "Axis", "FakeWorld"]
