"""The hopping-scan engine: a pymmcore-plus MDA engine for SECCM.

It is run by the core's MDA runner (``core.mda``), so pause, resume, cancel
and the runner's signals behave as in any pymmcore-plus acquisition. It talks
to the instrument only through the core, using the core's current XY stage,
its focus (Z) stage and the potentiostat device named in the plan, so the same
engine runs on the simulated rig and on any rig that offers:

- Z and XY stages (any Micro-Manager stages);
- a potentiostat Generic device with ``Potential_V``, ``Cell``,
  ``Current_A`` and, for hardware-timed programs, ``Waveform`` /
  ``Acquire`` / ``LastTrace`` (see ``docs/devices.md``);
- optionally a Z stage with a device-side approach (``Approach``,
  ``Approach_*``); without one, contact detection runs as a software loop of
  Z steps and current reads through the core.

One hop (one event): lift, lateral move, fast descent to just above the
predicted landing, slow approach with contact detection, the measurement
program, retract, and the point handed to the store's writer thread.

Each step is started through the core and then awaited: the engine polls the
device's ``busy()`` with a deadline (a device that never finishes is a fault,
not a hang) and watches for Stop / cancel and the emergency stop, which abort
the step in progress through ``core.stop`` (stages) or ``Acquire`` = ``Abort``
(the potentiostat). Every reading is checked before it is trusted: a stage that
did not reach its target, a contact height that disagrees with where the stage
stopped or lies outside the searched range, or a trace without finite samples
make a ``fault`` point, never an ``ok`` one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.mda import PMDAEngine

from .live import ApproachFeed, LiveTrace
from .store import FAILED, FALSE_TRIGGER, NO_CONTACT, OK, SATURATED, PointRecord

try:  # the point status of an untrusted reading (older stores lack it)
    from .store import FAULT
except ImportError:  # pragma: no cover
    FAULT = FAILED
from .surface import SurfaceModel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from pymmcore_plus import CMMCorePlus
    from useq import MDAEvent, MDASequence

    from ..model import ProbeSpec
    from .plan import ScanPlan, ScanPoints
    from .store import StoreWriter


logger = logging.getLogger(__name__)


class ScanAborted(RuntimeError):
    """The scan stopped itself (e.g. too many points without contact)."""


class DeviceFault(RuntimeError):
    """A device did not do what it was asked: it missed its deadline, reported
    an error, gave readings that cannot be trusted, or the emergency stop was
    latched. The scan ends with status ``fault``."""


class _HopCanceled(Exception):
    """Stop / cancel arrived during a hop: the step in progress was aborted."""


#: how far a stage may end from its target before the move counts as failed, um
POSITION_TOLERANCE_UM = 0.05
#: how far below the first detection the stage may stop (overshoot), um
MAX_OVERSHOOT_UM = 0.5
#: deadline of a step: expected instrument time x this + DEADLINE_MARGIN_S
DEADLINE_FACTOR = 2.0
DEADLINE_MARGIN_S = 5.0
#: points in a row whose readings failed their check before the scan stops
MAX_CONSECUTIVE_FAULTS = 3
#: slow-changing state (the latch, the XY speed) is read again at most this often, s
POLL_S = 0.02


class ScanInterrupted(RuntimeError):
    """A KeyboardInterrupt or SystemExit during a hop, passed to the MDA runner
    as an ordinary error so that it still tears down (retract, cell off);
    ``__cause__`` is the original interrupt."""


@dataclass
class ProbeState:
    """What the engine knows about one probe: its devices (from its
    :class:`ProbeSpec`), its surface model, and where it has landed."""

    spec: ProbeSpec
    surface: SurfaceModel
    #: Micro-Manager labels of its Z stage and potentiostat (set at the sequence's start)
    z_dev: str = ""
    ps: str = ""
    #: a landing in this session (the last one's height and place)
    has_last: bool = False
    last_contact_z: float = math.nan
    last_xy: tuple[float, float] = (math.nan, math.nan)
    #: the highest landing of the scan (the safe height is above it)
    max_contact_z: float = -math.inf
    #: Z where this session started (the safe height while no landing is known)
    start_z: float = math.nan
    #: until the first landing of a session the surface is searched, not predicted
    session_landed: bool = False


class HoppingEngine(PMDAEngine):
    """Runs one hop per MDA event (``event.index["p"]`` = point index)."""

    def __init__(
        self,
        core: CMMCorePlus,
        plan: ScanPlan,
        writer: StoreWriter | None = None,
        *,
        points: ScanPoints | None = None,
        previous_landings: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        time_offset_s: float = 0.0,
    ) -> None:
        self.core = core
        self.plan = plan
        self.writer = writer
        self.points = points if points is not None else plan.points()
        surface = SurfaceModel(plan.surface.model, plan.surface.min_landings)
        if previous_landings is not None:
            surface.add_many(*previous_landings)
        #: the one probe of this plan; a dual-probe plan will hold two
        self.probe = ProbeState(plan.probe_spec(), surface)
        if previous_landings is not None:
            z_prev = np.asarray(previous_landings[2], dtype=float)
            z_prev = z_prev[np.isfinite(z_prev)]  # misses have no height
            if z_prev.size:
                self.probe.max_contact_z = float(z_prev.max())
        self.error: BaseException | None = None
        self.points_done = 0
        self.consecutive_failures = 0
        self.consecutive_saturated = 0
        self._last_row: int | None = None
        self._t0_instrument = 0.0
        #: instrument time of earlier sessions (resume): t_start_s keeps counting
        self.time_offset_s = time_offset_s
        self._last_reason = NO_CONTACT
        self._tan_tilt = math.tan(math.radians(plan.safety.max_tilt_deg))
        #: what the engine noticed and did about it (e.g. a surface offset on resume)
        self.notes: list[str] = []
        #: set by Scan.cancel (and the emergency stop): abort the step in progress
        self.abort = threading.Event()
        self._estop = threading.Event()
        self.consecutive_faults = 0
        self._clock_dev = ""
        self._tearing_down = False
        self._xy_error_um = 0.0
        self._z_speed_sent, self._z_speed_t = math.nan, -math.inf
        self._ap_speed_sent, self._ap_speed_t = math.nan, -math.inf
        #: Z and XY as last checked by this engine (NaN: read them)
        self._z = math.nan
        self._xy = (math.nan, math.nan)
        #: the hop in progress as it is measured (current and Z against the
        #: instrument time of this session), for a live plot to poll
        self.live = LiveTrace()
        #: this hop's approach curve (Z um, current A) and whether its contact
        #: was accepted by hand
        self._ap_curve: tuple[np.ndarray, np.ndarray] | None = None
        self._manual = False

    # ------------------------------------------------------------ helpers
    def instrument_time_s(self) -> float:
        """Instrument time: the controller's clock if a device publishes one
        (``InstrumentTime_s``), else the wall clock."""
        if self._clock_dev:
            return float(self.core.getProperty(self._clock_dev, "InstrumentTime_s"))
        return time.perf_counter()

    def _set_prop(self, dev: str, prop: str, value: Any) -> None:
        # always sent (a few us): someone may have changed it since, e.g. in a
        # property browser, and a stale speed could crash the pipette
        self.core.setProperty(dev, prop, value)

    def _xy_speed_now(self) -> float:
        """The XY stage's speed (someone may lower it mid-scan: read again at
        most every POLL_S of wall time), um/s."""
        now = time.perf_counter()
        if self._has_xy_speed and now - self._xy_speed_t > POLL_S:
            self._xy_speed = float(self.core.getProperty(self.xy_dev, "Speed_um_per_s"))
            self._xy_speed_t = now
        return self._xy_speed

    def _poll_latch(self, force: bool = False) -> None:
        """Ask the hubs whether their emergency stop is latched (their event may
        not reach this thread: Qt delivers it to the GUI thread's loop); at most
        every POLL_S of wall time unless ``force``."""
        now = time.perf_counter()
        if not force and now - self._latch_t < POLL_S:
            return
        self._latch_t = now
        for dev in self._latch_devs:
            if self.core.getProperty(dev, "EmergencyStop") == "Latched":
                self._estop.set()

    def _stop_requested(self) -> bool:
        if self._estop.is_set():
            return True
        if self._tearing_down:  # the retract after a Stop must not be stopped by it
            return False
        return self.abort.is_set() or bool(getattr(self.core.mda, "_cancel_requested", False))

    def _start(self, dev: str, what: str, call: Any, *args: Any) -> None:
        """Start a step on ``dev``; a device that refuses or fails to start it is
        a device fault (with the device's own message)."""
        try:
            call(*args)
        except Exception as e:
            raise DeviceFault(f"{dev} could not start {what}: {e}") from e

    def _abort_device(self, dev: str) -> None:
        """Abort what ``dev`` is doing (no device lock is taken for stages)."""
        core = self.core
        try:
            if dev in (self.xy_dev, self.probe.z_dev):
                core.stop(dev)
            elif self._hw_waveform and core.hasProperty(dev, "Acquire"):
                core.setProperty(dev, "Acquire", "Abort")
        except Exception as e:
            logger.error("aborting %s failed: %s", dev, e)

    def _await(
        self, dev: str, what: str, expected_s: float, on_poll: Callable[[], None] | None = None
    ) -> None:
        """Wait until ``dev`` is no longer busy: abort it on Stop / cancel or the
        emergency stop, and fault when it exceeds its deadline. ``on_poll()``
        is called while it waits (it keeps its own pace)."""
        core = self.core
        busy = core.deviceBusy
        if busy(dev):
            margin = getattr(self.plan.safety, "deadline_margin_s", DEADLINE_MARGIN_S)
            limit = expected_s * DEADLINE_FACTOR + margin
            deadline = time.perf_counter() + limit
            spins = 0
            while busy(dev):
                if self._stop_requested():
                    self._abort_device(dev)
                    self._settle(dev)
                    if self._estop.is_set():
                        raise DeviceFault(f"emergency stop during {what}")
                    raise _HopCanceled(what)
                if time.perf_counter() > deadline:
                    self._abort_device(dev)
                    still = not self._settle(dev)
                    raise DeviceFault(
                        f"{dev} did not finish {what} within {limit:.3g} s (expected "
                        f"{expected_s:.3g} s); it was told to stop"
                        + (", and it is still busy" if still else "")
                    )
                if on_poll is not None:
                    on_poll()
                # the worker usually ends within a few hundred us in fast mode:
                # yield first, then poll at up to 5 ms
                if spins < 50:
                    time.sleep(0)
                else:
                    time.sleep(min(0.005, 0.0002 * (spins - 49)))
                    self._poll_latch()
                spins += 1
        if self._estop.is_set():
            raise DeviceFault(f"emergency stop during {what}")

    def _raise_device_error(self, dev: str, what: str) -> None:
        """When a reading looks wrong: if the device reported an error, that is
        the fault (read only then: it costs a core call per step otherwise)."""
        if dev in self._has_last_error:
            err = self.core.getProperty(dev, "LastError")
            if err:
                raise DeviceFault(f"{dev} reported an error during {what}: {err}")

    def _settle(self, dev: str, timeout_s: float = 1.0) -> bool:
        """After an abort: wait (briefly) until ``dev`` is idle; False if it is not."""
        t_end = time.perf_counter() + timeout_s
        while self.core.deviceBusy(dev):
            if time.perf_counter() > t_end:
                return False
            time.sleep(0.001)
        return True

    def _z_speed(self, speed: float | None) -> float:
        """Send the Z speed for the next move. Sent again whenever it changes,
        and at least every POLL_S of wall time (every move on an instrument):
        a speed edited mid-scan elsewhere, if higher, could crash the pipette."""
        if speed is not None and self._z_speed_prop:
            now = time.perf_counter()
            if speed != self._z_speed_sent or now - self._z_speed_t > POLL_S:
                self._set_prop(self.probe.z_dev, "Speed_um_per_s", speed)
                self._z_speed_sent, self._z_speed_t = speed, now
            return speed
        return self._z_speed_now()

    def _z_speed_now(self) -> float:
        if self._z_speed_prop:
            return float(self.core.getProperty(self.probe.z_dev, "Speed_um_per_s"))
        return 1.0

    def _move_z(self, z: float, speed: float | None = None) -> None:
        if z < self.z_floor:
            raise ScanAborted(
                f"refusing to move Z to {z:g} um: below the Z floor {self.z_floor:g} um"
            )
        v = self._z_speed(speed)
        core = self.core
        here = self._z_now()
        self._z = math.nan  # unknown until the move is checked
        self._start(
            self.probe.z_dev, f"the Z move to {z:.3f} um", core.setPosition, self.probe.z_dev, z
        )
        self._await(self.probe.z_dev, f"the Z move to {z:.3f} um", abs(z - here) / v)
        got = float(core.getPosition(self.probe.z_dev))
        if abs(got - z) > POSITION_TOLERANCE_UM:
            self._raise_device_error(self.probe.z_dev, f"the Z move to {z:.3f} um")
            raise DeviceFault(
                f"{self.probe.z_dev} ended at Z = {got:.3f} um instead of {z:.3f} um "
                f"(tolerance {POSITION_TOLERANCE_UM:g} um)"
            )
        self._z = got
        if self.live.watched:
            self.live.push_one(self._t_live(), got, math.nan)

    def _t_live(self) -> float:
        """Instrument time since this session started, s (the live plot's axis)."""
        return self.instrument_time_s() - self._t0_instrument

    def _approach_fields(self) -> dict[str, Any]:
        """This hop's approach curve and manual flag, for its PointRecord."""
        if self._ap_curve is None:
            return {"manual_contact": self._manual}
        z, cur = self._ap_curve
        return {"approach_z_um": z, "approach_current_A": cur, "manual_contact": self._manual}

    def _z_now(self) -> float:
        """Z as last checked by this engine (read from the stage when unknown:
        after an approach, a fault or at the start)."""
        if not math.isfinite(self._z):
            self._z = float(self.core.getPosition(self.probe.z_dev))
        return self._z

    def _move_xy(self, x: float, y: float) -> bool:
        """Move laterally; False if the stage did not reach the target."""
        core = self.core
        x0, y0 = self._xy
        if not math.isfinite(x0):
            x0, y0 = core.getXYPosition(self.xy_dev)
        self._xy = (math.nan, math.nan)  # unknown until the move is checked
        self._start(
            self.xy_dev, f"the move to ({x:g}, {y:g}) um", core.setXYPosition, self.xy_dev, x, y
        )
        self._await(
            self.xy_dev,
            f"the move to ({x:g}, {y:g}) um",
            math.hypot(x - x0, y - y0) / self._xy_speed_now(),
        )
        xa, ya = core.getXYPosition(self.xy_dev)
        self._xy = (float(xa), float(ya))
        self._xy_error_um = math.hypot(xa - x, ya - y)
        if self._xy_error_um > POSITION_TOLERANCE_UM:
            self._raise_device_error(self.xy_dev, f"the move to ({x:g}, {y:g}) um")
            return False
        return True

    def _on_property(self, dev: str, prop: str, value: Any) -> None:
        if prop == "EmergencyStop" and str(value) == "Latched":
            self._estop.set()

    def emergency_stopped(self) -> None:
        """The emergency stop was latched: the step in progress ends as a
        fault, and nothing moves any more (not even the retract)."""
        self._estop.set()

    # ------------------------------------------------------- MDA protocol
    def setup_sequence(self, sequence: MDASequence) -> dict[str, Any] | None:
        core, plan = self.core, self.plan
        self.xy_dev = core.getXYStageDevice()
        #: the measurement at every landing (one typed program, sampled one way)
        self._program = plan.program()
        spec = self.probe.spec
        self.probe.z_dev = spec.z_stage or core.getFocusDevice()
        self.probe.ps = spec.potentiostat
        if not self.xy_dev or not self.probe.z_dev:
            raise RuntimeError("the core needs an XY stage and a focus (Z) stage for a scan")
        loaded = core.getLoadedDevices()
        if self.probe.ps not in loaded:
            raise RuntimeError(f"potentiostat {self.probe.ps!r} is not loaded")
        has = core.hasProperty
        devs = [d for d in loaded if d != "Core"]
        self._clock_dev = next((d for d in devs if has(d, "InstrumentTime_s")), "")
        latched = [
            d
            for d in devs
            if has(d, "EmergencyStop") and core.getProperty(d, "EmergencyStop") == "Latched"
        ]
        if latched:
            raise DeviceFault(
                f"the emergency stop of {', '.join(latched)} is latched: reset it "
                "(napari_seccm.reset_emergency_stop(core)) before a scan"
            )
        self._has_last_error = {
            d for d in (self.xy_dev, self.probe.z_dev, self.probe.ps) if has(d, "LastError")
        }
        self._has_xy_speed = has(self.xy_dev, "Speed_um_per_s")
        self._xy_speed, self._xy_speed_t, self._latch_t = 1.0, -math.inf, -math.inf
        self._estop.clear()
        core.events.propertyChanged.connect(self._on_property)
        self._device_approach = has(self.probe.z_dev, "Approach") and has(
            self.probe.z_dev, "Approach_Result"
        )
        method = plan.approach.method
        if method == "device" and not self._device_approach:
            raise RuntimeError(
                f"the plan asks for a device-side approach but {self.probe.z_dev!r} has none"
            )
        self._use_device_approach = self._device_approach and method != "software"
        self._ap_trace_prop = has(self.probe.z_dev, "Approach_Trace")
        self._ap_progress = has(self.probe.z_dev, "Approach_Progress")
        self._has_health = has(self.probe.z_dev, "ProbeHealth")
        self._health_t = -math.inf
        self._noted_clogged = False
        self._latch_devs = [d for d in devs if has(d, "EmergencyStop")]
        self._interlock_props = {
            p for p in ("Interlock_MinZ_um", "Interlock_LateralMinZ_um") if has(self.probe.z_dev, p)
        }
        self._hw_waveform = has(self.probe.ps, "Waveform") and has(self.probe.ps, "LastTrace")
        self._z_speed_prop = has(self.probe.z_dev, "Speed_um_per_s")
        lo = -math.inf
        if has(self.probe.z_dev, "ZMin_um"):
            lo = float(core.getProperty(self.probe.z_dev, "ZMin_um"))
        self.z_floor = plan.safety.z_floor_um if plan.safety.z_floor_um is not None else lo
        pst = plan.potentiostat
        if self._hw_waveform:
            # a long program left by an earlier scan would make a higher sample
            # rate exceed the device's sample cap: a short one until the real one
            self._set_prop(
                self.probe.ps,
                "Waveform",
                json.dumps([{"hold": plan.approach.potential_V, "t": 0.001}]),
            )
        for prop, val in (
            ("SampleRate_Hz", pst.sample_rate_Hz),
            ("Filter_Hz", pst.filter_Hz),
            ("CurrentRange_A", pst.current_range_A),
        ):
            if has(self.probe.ps, prop):
                # the filter must stay below half the rate at every step
                if (
                    prop == "SampleRate_Hz"
                    and float(core.getProperty(self.probe.ps, "Filter_Hz")) > val / 2
                ):
                    self._set_prop(self.probe.ps, "Filter_Hz", pst.filter_Hz)
                self._set_prop(self.probe.ps, prop, val)
        self._range = (
            float(core.getProperty(self.probe.ps, "CurrentRange_A"))
            if has(self.probe.ps, "CurrentRange_A")
            else math.inf
        )
        if self._hw_waveform:
            self._set_prop(self.probe.ps, "Waveform", self._program.to_json())
        if self._use_device_approach:
            a = plan.approach
            self._set_prop(self.probe.z_dev, "Approach_Threshold_A", a.threshold_A)
            self._set_prop(self.probe.z_dev, "Approach_Detection", a.detection)
            self._set_prop(self.probe.z_dev, "Approach_ConfirmSamples", a.confirm_samples)
        self._set_prop(self.probe.ps, "Potential_V", plan.approach.potential_V)
        self._set_prop(self.probe.ps, "Cell", "On")
        fs = pst.sample_rate_Hz
        self._program_s = self._program.duration_s
        self._n_samples = self._program.n_samples(pst.sample_rate_Hz)
        w0, w1 = plan.readout_window_s()
        self._win = slice(int(round(w0 * fs)), max(int(round(w1 * fs)), int(round(w0 * fs)) + 1))
        self._t0_instrument = self.instrument_time_s()
        self._t0_wall = time.perf_counter()
        self.probe.start_z = float(core.getPosition(self.probe.z_dev))
        # resuming: the pipette may have been left low; lift before any move
        self._retract_to_safe()
        return None

    def event_iterator(self, events: Iterable[MDAEvent]) -> Iterator[MDAEvent]:
        return iter(events)

    def setup_event(self, event: MDAEvent) -> None:
        """Nothing to prepare: a hop is one indivisible operation."""

    def exec_event(self, event: MDAEvent) -> Iterable[Any]:
        i = int(event.index["p"])
        try:
            record, trace = self._hop(i)
        except _HopCanceled as e:
            # Stop during the hop: the step was aborted; the point is not
            # recorded (a resume measures it) and the runner ends the scan
            logger.info("point %d not measured: stopped during %s", i, e)
            return []
        except Exception as e:
            self.error = e
            raise
        except BaseException as e:  # Ctrl-C, exit: the runner only tears down on Exception
            self.error = e
            raise ScanInterrupted(f"{type(e).__name__} during point {i}") from e
        self.points_done += 1
        meta = {
            "seccm": {
                "index": record.i,
                "status": record.status,
                "value_A": record.value_A,
                "contact_z_um": record.contact_z_um,
                "x_um": record.x_um,
                "y_um": record.y_um,
            }
        }
        img = trace if trace is not None else np.empty((2, 0))
        return [(img, event, meta)]

    def teardown_sequence(self, sequence: MDASequence) -> None:
        """However the scan ends: retract to the safe height, cell off, flush.

        The emergency stop is still watched meanwhile (a retract that hangs
        can be cut short by it); after it nothing moves, so the pipette is left
        where it stopped, and the reason says so."""
        # the teardown must not be canceled by the Stop that brought it here
        self._tearing_down = True
        problems = []
        try:
            if self._estop.is_set():
                problems.append(
                    "the pipette was not retracted: the emergency stop holds every motion "
                    "until it is reset"
                )
            else:
                self._retract_to_safe()
        except _HopCanceled:
            problems.append("the retract was interrupted")
        except Exception as e:
            problems.append(f"retract failed: {e}")
        try:
            self._set_prop(self.probe.ps, "Cell", "Off")
        except Exception as e:
            problems.append(f"switching the cell off failed: {e}")
        with contextlib.suppress(Exception):
            self.core.events.propertyChanged.disconnect(self._on_property)
        self.teardown_problems = problems

    def safe_height_um(self) -> float:
        """Above every landing so far; with none, where the scan started."""
        if math.isfinite(self.probe.max_contact_z):
            return self.probe.max_contact_z + self.plan.retract_um + self.plan.flyback_extra_um
        return self.probe.start_z if math.isfinite(self.probe.start_z) else -math.inf

    def _retract_to_safe(self) -> None:
        z = self.core.getPosition(self.probe.z_dev)
        target = self.safe_height_um()
        if math.isfinite(target) and z < target:
            self._move_z(target, self.plan.approach.fast_speed_um_per_s)

    # ----------------------------------------------------------------- hop
    def _hop(self, i: int) -> tuple[PointRecord, np.ndarray | None]:
        plan, a = self.plan, self.plan.approach
        self._poll_latch()
        if self._estop.is_set():
            raise DeviceFault("the emergency stop is latched")
        self._ap_curve, self._manual = None, False
        pts = self.points
        x, y, row = float(pts.x_um[i]), float(pts.y_um[i]), int(pts.row[i])
        t_start = self.time_offset_s + self.instrument_time_s() - self._t0_instrument
        # until the plane is trusted the surface may rise by tan(max tilt) per
        # um of hop: the lift and the slow zone grow with the hop's length
        # trusted: fitted, and from landings spread in both directions (from a
        # first row alone, the slope across the rows would be taken as 0)
        trusted = (
            self.probe.surface.coefficients() is not None
            and self.probe.surface.min_spread_um() >= plan.pitch_um / 3
        )
        hop = (
            math.hypot(x - self.probe.last_xy[0], y - self.probe.last_xy[1])
            if self.probe.has_last
            else 0.0
        )
        slope_extra = 0.0 if trusted else self._tan_tilt * hop
        # 1. lift (extra on a raster fly-back), 2. lateral move
        if self.probe.has_last:
            lift = self.probe.last_contact_z + plan.retract_um + slope_extra
            if trusted:
                lift = max(lift, float(self.probe.surface.predict(x, y)) + plan.retract_um)
            if plan.order == "raster" and self._last_row is not None and row != self._last_row:
                lift += plan.flyback_extra_um
            if self._z_now() < lift:
                self._move_z(lift, a.fast_speed_um_per_s)
        # the device refuses a lateral move near its last contact (which may be
        # a landing made by hand before the scan, or one this engine distrusted)
        clear = self._interlock_z("Interlock_LateralMinZ_um")
        if math.isfinite(clear) and self._z_now() < clear:
            self._move_z(clear, a.fast_speed_um_per_s)
        self._last_row = row
        if not self._move_xy(x, y):
            return self._fault_point(
                i,
                x,
                y,
                t_start,
                f"{self.xy_dev} ended {self._xy_error_um:.3f} um from ({x:g}, {y:g}) um "
                f"(tolerance {POSITION_TOLERANCE_UM:g} um)",
            )
        # 3. where do we expect the surface? The first landing of a session is
        # searched for (slowly, to a limited depth) even with earlier landings:
        # after a resume the pipette may have been changed
        h = self.probe.surface.predict(x, y) if self.probe.session_landed else None
        if h is None:
            found = self._search(i, x, y)
            self._move_z(found + plan.retract_um, a.fast_speed_um_per_s)
            h = found
        margin = max(a.slow_zone_um, 3.0 * self.probe.surface.rms_um) + slope_extra
        z_slow = h + margin
        # a plain move may not go below the last contact (the device's
        # interlock): from there the approach goes on, slowly
        floor = self._interlock_z("Interlock_MinZ_um")
        if math.isfinite(floor):
            z_slow = max(z_slow, floor)
        if self._z_now() > z_slow:
            self._move_z(z_slow, a.fast_speed_um_per_s)
        z_from = self._z_now()
        stop = max(h - a.max_depth_um, self.z_floor)
        contact_z = self._approach(stop, a.slow_speed_um_per_s)
        if contact_z is None:
            return self._miss(i, x, y, t_start, self._last_reason)
        bad = self._check_contact(contact_z, z_from, stop)
        if bad:
            return self._fault_point(i, x, y, t_start, bad)
        # in contact: from now on any teardown must lift above this landing too
        self.probe.surface.add(x, y, contact_z)
        self.probe.has_last, self.probe.last_contact_z = True, contact_z
        self.probe.last_xy = (x, y)
        self.probe.max_contact_z = max(self.probe.max_contact_z, contact_z)
        # 4. measure
        trace = self._measure()
        cur = trace[2]
        window = cur[self._win]
        value = float(np.mean(window)) if window.size else math.nan
        status = OK
        bad = ""
        if cur.size != self._n_samples:
            bad = f"{cur.size} samples instead of the program's {self._n_samples}"
        elif not window.size or not np.isfinite(window).all():
            bad = "samples that are not numbers"
        if bad:
            # not the planned measurement: never an ok point
            status = FAULT
            value = math.nan
            self.consecutive_faults += 1
            note = f"point {i}: the potentiostat returned {bad}"
            logger.warning(note)
            self.notes.append(note)
            del self.notes[:-20]
        elif np.max(np.abs(window)) >= 0.999 * self._range:
            status = SATURATED
        if cur.size == 0 or float(trace[1, -1]) != a.potential_V:  # back to the approach E
            self._set_prop(self.probe.ps, "Potential_V", a.potential_V)
        # 5. retract (the droplet detaches), 6. hand over to the writer
        self._move_z(contact_z + plan.retract_um, a.fast_speed_um_per_s)
        self.consecutive_failures = 0
        if status != FAULT:
            self.consecutive_faults = 0
        self.consecutive_saturated = self.consecutive_saturated + 1 if status == SATURATED else 0
        xa, ya = self._xy
        rec = PointRecord(
            i,
            status,
            value,
            contact_z,
            xa,
            ya,
            t_start,
            time.time(),
            current_A=cur,
            potential_V=trace[1],
            **self._approach_fields(),
        )
        if self.writer is not None:
            self.writer.put(rec)
        self._check_fault_limit(x, y)
        limit = plan.safety.max_consecutive_saturated
        if self.consecutive_saturated >= limit:
            raise ScanAborted(
                f"{self.consecutive_saturated} points in a row saturated the "
                f"{self._range * 1e9:g} nA current range (limit max_consecutive_saturated = "
                f"{limit}): choose a larger range and resume"
            )
        return rec, trace[1:]  # rows [E_V, I_A] (a view: the payload of frameReady)

    def _interlock_z(self, prop: str) -> float:
        """A height the Z stage's interlock reports (NaN when it has none)."""
        if prop not in self._interlock_props:
            return math.nan
        return float(self.core.getProperty(self.probe.z_dev, prop))

    def _check_contact(self, contact_z: float, z_from: float, stop: float) -> str:
        """Why the reported contact height cannot be trusted ('' if it can): it
        must lie in the range searched, and the stage must have stopped just
        below it (the detection's overshoot)."""
        z_end = self._z_now()
        tol = POSITION_TOLERANCE_UM
        if not (stop - tol <= contact_z <= z_from + tol):
            return (
                f"contact height {contact_z:.3f} um reported outside the range searched "
                f"[{stop:.3f}, {z_from:.3f}] um"
            )
        if not (contact_z - MAX_OVERSHOOT_UM - tol <= z_end <= contact_z + tol):
            return (
                f"contact height {contact_z:.3f} um disagrees with where {self.probe.z_dev} stopped "
                f"({z_end:.3f} um; at most {MAX_OVERSHOOT_UM:g} um below the contact is expected)"
            )
        return ""

    def _fault_point(
        self, i: int, x: float, y: float, t_start: float, why: str
    ) -> tuple[PointRecord, None]:
        """A point whose readings failed their check: recorded as ``fault``
        (never as a measurement), the pipette lifted above wherever it is."""
        logger.warning("point %d at (%g, %g) um: %s", i, x, y, why)
        self.notes.append(f"point {i}: {why}")
        del self.notes[:-20]
        self.consecutive_faults += 1
        rec = PointRecord(
            i, FAULT, math.nan, math.nan, x, y, t_start, time.time(), **self._approach_fields()
        )
        if self.writer is not None:
            self.writer.put(rec)
        here = float(self.core.getPosition(self.probe.z_dev))
        heights = [here, self.probe.max_contact_z, self._interlock_z("Interlock_MinZ_um")]
        target = max(h for h in heights if math.isfinite(h))
        self._move_z(target + self.plan.retract_um, self.plan.approach.fast_speed_um_per_s)
        self._check_fault_limit(x, y)
        return rec, None

    def _check_fault_limit(self, x: float, y: float) -> None:
        limit = getattr(self.plan.safety, "max_consecutive_faults", MAX_CONSECUTIVE_FAULTS)
        if self.consecutive_faults >= limit:
            last = self.notes[-1] if self.notes else ""
            raise DeviceFault(
                f"{self.consecutive_faults} points in a row with readings that cannot be "
                f"trusted (limit {limit}); last at x={x:g} um, y={y:g} um: {last}"
            )

    def _search(self, i: int, x: float, y: float) -> float:
        """The first landing of a session: search down from here, at most
        ``search_depth_um``; a miss stops the scan (the point is not recorded,
        so a resume retries it). Earlier landings that disagree with what is
        found (a new pipette, a moved sample) are no longer used to predict."""
        a = self.plan.approach
        z_from = float(self.core.getPosition(self.probe.z_dev))
        stop = max(z_from - a.search_depth_um, self.z_floor)
        found = self._approach(stop, a.search_speed_um_per_s)
        if found is not None:
            bad = self._check_contact(found, z_from, stop)
            if bad:
                raise DeviceFault(f"the first landing of this session cannot be trusted: {bad}")
        if found is None:
            z_end = float(self.core.getPosition(self.probe.z_dev))
            self._move_z(max(z_from, z_end), a.fast_speed_um_per_s)
            raise ScanAborted(
                f"no contact on the first landing of this session at x={x:g} um, y={y:g} um "
                f"(point {i}): searched from Z = {z_from:.3f} um down to {stop:.3f} um at "
                f"{a.potential_V:g} V, threshold {a.threshold_A * 1e12:g} pA. Check the cell, "
                "the potential, the threshold against the current range, and the pipette "
                "(clogged?); the pipette is back at the start height"
            )
        predicted = self.probe.surface.predict(x, y)
        tol = max(a.slow_zone_um, 3.0 * self.probe.surface.rms_um)
        if predicted is not None and abs(found - predicted) > tol:
            note = (
                f"the surface was found at Z = {found:.3f} um where earlier landings predict "
                f"{predicted:.3f} um ({found - predicted:+.3f} um): a new pipette or a moved "
                "sample; earlier landings are no longer used to predict"
            )
            logger.warning(note)
            self.notes.append(note)
            self.probe.surface = SurfaceModel(
                self.plan.surface.model, self.plan.surface.min_landings
            )
            self.probe.max_contact_z = found
        self.probe.session_landed = True
        return found

    def _miss(
        self, i: int, x: float, y: float, t_start: float, status: int
    ) -> tuple[PointRecord, None]:
        self.consecutive_failures += 1
        rec = PointRecord(
            i, status, math.nan, math.nan, x, y, t_start, time.time(), **self._approach_fields()
        )
        if self.writer is not None:
            self.writer.put(rec)
        # lift back to where the next hop expects to start
        if math.isfinite(self.probe.max_contact_z):
            here = self.core.getPosition(self.probe.z_dev)
            target = self.probe.max_contact_z + self.plan.retract_um
            if here < target:
                self._move_z(target, self.plan.approach.fast_speed_um_per_s)
        limit = self.plan.safety.max_consecutive_failures
        if self.consecutive_failures >= limit:
            raise ScanAborted(
                f"{self.consecutive_failures} points in a row without contact "
                f"(limit max_consecutive_failures = {limit}); last at x={x:g} um, y={y:g} um"
            )
        return rec, None

    def _approach(self, stop_z: float, speed: float) -> float | None:
        """Lower Z to ``stop_z`` at ``speed`` until contact; the contact height or None."""
        if self._use_device_approach:
            core, z = self.core, self.probe.z_dev
            here = self._z_now()
            if stop_z >= here:
                self._last_reason = NO_CONTACT
                return None
            self._set_prop(z, "Approach_StopZ_um", stop_z)
            # like the Z speed: sent when it changes, and at least every POLL_S
            now = time.perf_counter()
            if speed != self._ap_speed_sent or now - self._ap_speed_t > POLL_S:
                self._set_prop(z, "Approach_Speed_um_per_s", speed)
                self._ap_speed_sent, self._ap_speed_t = speed, now
            self._z = math.nan  # where it stops is the stage's to say
            # its samples reach the live plot while it comes down
            read = (lambda: core.getProperty(z, "Approach_Progress")) if self._ap_progress else None
            # (nobody plots the hop: nothing is pushed, the curve is still stored)
            watched = self.live.watched
            feed = ApproachFeed(
                self.live if watched else None,
                self._t_live() if watched else 0.0,
                read if watched else None,
            )
            self._start(z, "the approach", core.setProperty, z, "Approach", "Start")
            self._await(z, "the approach", (here - stop_z) / speed, feed.poll)
            result = str(core.getProperty(z, "Approach_Result"))
            self._keep_approach_trace(feed)
            self._check_probe_health()
            if result in ("contact", "already in contact", "manual contact"):
                if result == "manual contact":
                    self._manual = True
                    note = f"contact accepted by hand at Z = {self._z_now():.3f} um"
                    logger.info(note)
                    self.notes.append(note)
                    del self.notes[:-20]
                return float(core.getProperty(z, "Approach_ContactZ_um"))
            if result in ("no contact", "false trigger"):
                self._last_reason = FALSE_TRIGGER if result == "false trigger" else NO_CONTACT
                return None
            # aborted by another client (a stage widget's STOP), an error, or a
            # result this engine does not know: never a recorded miss
            self._raise_device_error(z, "the approach")
            raise DeviceFault(f"{z}: the approach ended with {result!r}")
        return self._software_approach(stop_z, speed)

    def _keep_approach_trace(self, feed: ApproachFeed) -> None:
        """The approach's samples (the Z stage's ``Approach_Trace``: rows
        [t_s, z_um, I_A]): this hop's approach curve, and the live plot's
        (those ``feed`` did not push while it came down)."""
        if not self._ap_trace_prop:
            return
        tr = self.core.getProperty(self.probe.z_dev, "Approach_Trace")
        if not isinstance(tr, np.ndarray) or tr.ndim != 2 or tr.shape[0] != 3:
            return  # a C++ adapter's text, or nothing: no curve
        self._ap_curve = (tr[1], tr[2])
        feed.finish(tr)

    def _check_probe_health(self) -> None:
        """A broken pipette ends the scan (every later point would be wrong); a
        clogged one is noted (its points read near zero current)."""
        if not self._has_health:
            return
        # read at most every POLL_S of wall time: every landing on an
        # instrument (a hop takes a large part of a second)
        now = time.perf_counter()
        if now - self._health_t < POLL_S:
            return
        self._health_t = now
        health = str(self.core.getProperty(self.probe.z_dev, "ProbeHealth"))
        if health == "broken":
            raise DeviceFault(
                f"{self.probe.z_dev} reports the pipette broken: stop, fit a new pipette and "
                "resume (the resumed session searches for the surface again)"
            )
        if health == "clogged" and not self._noted_clogged:
            self._noted_clogged = True
            note = f"{self.probe.z_dev} reports the pipette clogged"
            logger.warning(note)
            self.notes.append(note)

    def _software_approach(self, stop_z: float, speed: float) -> float | None:
        """Fallback: step Z down and read the current through the core after each step."""
        a = self.plan.approach
        core = self.core
        z = core.getPosition(self.probe.z_dev)
        step = a.software_step_um
        baseline: list[float] = []
        zs: list[float] = []
        cs: list[float] = []
        while z - step >= stop_z:
            z -= step
            self._move_z(z, speed)
            i = float(core.getProperty(self.probe.ps, "Current_A"))
            zs.append(z)
            cs.append(i)
            self._ap_curve = (np.array(zs), np.array(cs))
            if self._fires(i, baseline):
                ok = all(
                    self._fires(float(core.getProperty(self.probe.ps, "Current_A")), baseline)
                    for _ in range(a.confirm_samples)
                )
                if ok:
                    return z
            baseline.append(i)
            del baseline[:-50]
        self._last_reason = NO_CONTACT
        return None

    def _fires(self, i: float, baseline: list[float]) -> bool:
        a = self.plan.approach
        base = float(np.mean(baseline)) if baseline else 0.0
        if a.detection == "absolute":
            return abs(i) >= a.threshold_A
        if a.detection == "rise":
            return i - base >= a.threshold_A
        return abs(i - base) >= a.threshold_A

    def _measure(self) -> np.ndarray:
        """Run the program; rows [t_s, E_V, I_A]."""
        core, ps = self.core, self.probe.ps
        if self._hw_waveform:
            t0 = self._t_live() if self.live.watched else math.nan
            self._start(ps, "the measurement program", core.setProperty, ps, "Acquire", "Run")
            self._await(ps, "the measurement program", self._program_s)
            trace = _as_trace(core.getProperty(ps, "LastTrace"))
            if trace.shape[1]:
                z = self._z_now()
                if math.isfinite(t0):
                    self.live.push(
                        t0 + trace[0] - trace[0, 0], np.full(trace.shape[1], z), trace[2]
                    )
            if trace.shape[1] != self._n_samples:
                # cut short (stopped by another client), or sampled at another
                # rate than planned: not the planned measurement
                self._raise_device_error(ps, "the measurement program")
            return trace
        # no hardware timing: step through the program's samples, setting the
        # potential and reading the current through the core at each
        fs = self.plan.potentiostat.sample_rate_Hz
        e = self._program.sample(fs)
        i = np.empty(e.size)
        for k, ek in enumerate(e):
            if self._stop_requested():
                raise _HopCanceled("the measurement program")
            self._set_prop(ps, "Potential_V", float(ek))
            i[k] = float(core.getProperty(ps, "Current_A"))
        return np.vstack((np.arange(e.size) / fs, e, i))


def _as_trace(value: Any) -> np.ndarray:
    """LastTrace as a (3, n) array: native on UniMMCore, text from a C++ adapter."""
    if isinstance(value, np.ndarray):
        return value
    text = str(value).strip()
    if not text:
        return np.empty((3, 0))
    arr = np.array([float(v) for v in text.replace(";", ",").split(",")])
    return arr.reshape(3, -1)
