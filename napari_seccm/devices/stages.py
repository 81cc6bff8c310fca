"""Piezo stages: ``PiezoXY`` (lateral) and ``PiezoZ`` (the pipette's height).

Peripherals of a controller hub. Z is larger farther from the sample. Moves
follow Micro-Manager's asynchronous convention: a move (or the approach)
starts and returns at once, ``busy()`` is true until it has ended, and
``core.stop(label)`` aborts it. The end of every move emits the core's
position-changed event, so stage widgets follow.

Refused before anything moves, with a ``ValueError`` naming the value and the
limit: a target outside the travel, a Z move down below the last contact
height or a lateral move near the surface (the hub's interlocks), and anything
while the hub's emergency stop is latched.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.core._constants import FocusDirection
from pymmcore_plus.experimental.unicore import StageDevice, XYStageDevice, pymm_property

from ..model.detect import DETECT_MODES
from ._async import OperationAborted
from ._base import HubPeripheral, check_range, register

if TYPE_CHECKING:
    from collections.abc import Callable

APPROACH_MODES = DETECT_MODES

log = logging.getLogger(__name__)


def _within_controller(dev: HubPeripheral, axis: str, lo: float, hi: float) -> tuple[float, float]:
    """The travel set on the device, narrowed to what its controller reports
    (a controller that knows its axes' limits: ``travel_um(axis)``). A travel
    whose minimum is not below its maximum is refused (a config's typo)."""
    if not lo < hi:
        raise ValueError(
            f"{dev.get_label()}: the {axis} travel {axis}Min_um = {lo:g} um is not below "
            f"{axis}Max_um = {hi:g} um; set the minimum below the maximum in the config"
        )
    report = getattr(dev.controller, "travel_um", None)
    limits = report(axis) if report is not None else None
    if limits is None:
        return lo, hi
    c_lo, c_hi = (float(v) for v in limits)
    n_lo, n_hi = max(lo, c_lo), min(hi, c_hi)
    if n_lo >= n_hi:
        raise RuntimeError(
            f"{dev.get_label()}: the {axis} travel set here ({lo:g}..{hi:g} um) and the "
            f"controller's ({c_lo:g}..{c_hi:g} um) do not overlap"
        )
    if (n_lo, n_hi) != (lo, hi):
        log.info(
            "%s: %s travel %g..%g um narrowed to the controller's %g..%g um",
            dev.get_label(),
            axis,
            lo,
            hi,
            n_lo,
            n_hi,
        )
    return n_lo, n_hi


class PiezoXY(HubPeripheral, XYStageDevice):
    """SECCM lateral piezo stage (positions in um, stage frame)."""

    IS_XY_STAGE = True

    def resource(self) -> tuple[str, str]:
        return ("the XY stage", "")

    def __init__(self) -> None:
        super().__init__()
        register(
            self,
            "XMin_um",
            -50.0,
            "lower end of the X travel, um (moves beyond it raise)",
            limits=(-1e4, 1e4),
            is_pre_init=True,
        )
        register(
            self,
            "XMax_um",
            50.0,
            "upper end of the X travel, um (moves beyond it raise)",
            limits=(-1e4, 1e4),
            is_pre_init=True,
        )
        register(
            self,
            "YMin_um",
            -50.0,
            "lower end of the Y travel, um (moves beyond it raise)",
            limits=(-1e4, 1e4),
            is_pre_init=True,
        )
        register(
            self,
            "YMax_um",
            50.0,
            "upper end of the Y travel, um (moves beyond it raise)",
            limits=(-1e4, 1e4),
            is_pre_init=True,
        )
        self._speed = 50.0

    @pymm_property(limits=(0.1, 1000.0))
    def Speed_um_per_s(self) -> float:
        """Speed of lateral moves, um/s."""
        return self._speed

    @Speed_um_per_s.setter
    def Speed_um_per_s(self, value: float) -> None:
        self._speed = float(value)

    def initialize(self) -> None:
        super().initialize()
        g = self.get_property_value  # pre-init: fixed once initialized
        x = _within_controller(self, "X", float(g("XMin_um")), float(g("XMax_um")))
        y = _within_controller(self, "Y", float(g("YMin_um")), float(g("YMax_um")))
        self._travel = (*x, *y)

    def travel(self) -> tuple[float, float, float, float]:
        return self._travel

    def set_position_um(self, x: float, y: float) -> None:
        x, y = float(x), float(y)
        xmin, xmax, ymin, ymax = self.travel()
        check_range(f"{self.get_label()} X", x, xmin, xmax, "um")
        check_range(f"{self.get_label()} Y", y, ymin, ymax, "um")
        hub = self.hub
        hub.check_not_latched(self.get_label(), "a lateral move")
        hub.check_xy_move(self.get_label())
        speed, ctrl, label = self._speed, self.controller, self.get_label()

        def done(_: object, error: BaseException | None) -> Callable[[], None]:
            try:
                xa, ya = ctrl.get_xy_um()
            except Exception as e:  # the link is gone: LastError already says why
                log.warning("%s: no position after the move: %s", label, e)
                return lambda: None
            return lambda: self.core.events.XYStagePositionChanged.emit(label, float(xa), float(ya))

        self.start_operation(
            f"moving to ({x:g}, {y:g}) um",
            lambda abort: ctrl.move_xy_um(x, y, speed, abort),
            done,
        )

    def get_position_um(self) -> tuple[float, float]:
        return self.controller.get_xy_um()

    def set_origin_x(self) -> None:
        raise NotImplementedError("PiezoXY positions are absolute; the origin is fixed")

    def set_origin_y(self) -> None:
        raise NotImplementedError("PiezoXY positions are absolute; the origin is fixed")

    def home(self) -> None:
        self.set_position_um(0.0, 0.0)


class PiezoZ(HubPeripheral, StageDevice):
    """SECCM Z piezo carrying the pipette; larger Z is farther from the sample.

    Besides ordinary moves it runs the instrument-side approach: set the
    ``Approach_*`` parameters, then set ``Approach`` to ``Start``. Z descends at
    ``Approach_Speed_um_per_s`` while the current is sampled; it stops at the
    first confirmed contact (``Approach_Result`` = ``contact``, the height in
    ``Approach_ContactZ_um``) or at ``Approach_StopZ_um`` (``no contact``).
    The approach runs like a move: ``busy()`` until it has ended,
    ``core.stop(label)`` (or ``Approach`` = ``Stop``) aborts it (``aborted``).
    ``Approach`` = ``AcceptContact`` while it runs stops it too, and takes
    where the stage stopped as the contact (``manual contact``: a person saw
    the landing that the threshold missed); refused when no approach runs.
    Its end emits the position and ``Approach_Result`` through the core's
    events; its samples stay in ``Approach_Trace`` (rows [t_s, z_um, I_A]),
    their number in ``Approach_Trace_Samples``. While it runs,
    ``Approach_Progress`` holds the samples recorded so far (a live plot
    polls it; from a controller with ``approach_progress(probe)``).
    """

    IS_Z_STAGE = True

    def __init__(self) -> None:
        super().__init__()
        register(
            self,
            "Probe",
            "A",
            "which probe of the controller this Z stage carries (A; B for a second pipette)",
            is_pre_init=True,
        )
        register(
            self,
            "ZMin_um",
            0.0,
            "lower end of the Z travel, um (closest to the sample; the default Approach_StopZ_um)",
            limits=(-1e4, 1e4),
            is_pre_init=True,
        )
        register(
            self,
            "ZMax_um",
            100.0,
            "upper end of the Z travel, um (home position)",
            limits=(-1e4, 1e4),
            is_pre_init=True,
        )
        self._speed = 20.0
        self._ap_speed = 1.0
        self._ap_stop = 0.0
        self._ap_threshold = 3e-12
        self._ap_mode = "absolute"
        self._ap_confirm = 3
        #: AcceptContact was asked during the approach in progress
        self._ap_accept = False
        #: what Approach_Progress last showed of the approach in progress
        self._ap_shown = np.empty((3, 0))
        self._ap_result: dict[str, Any] = {
            "contact": False,
            "contact_z_um": math.nan,
            "reason": "idle",
            "trace": np.empty((3, 0)),
        }

    def initialize(self) -> None:
        super().initialize()
        self._probe = str(self.get_property_value("Probe"))
        self._travel = _within_controller(
            self,
            "Z",
            float(self.get_property_value("ZMin_um")),
            float(self.get_property_value("ZMax_um")),
        )
        self._ap_stop = self._travel[0]

    # ------------------------------------------------------------ plain moves
    @pymm_property(limits=(0.01, 500.0))
    def Speed_um_per_s(self) -> float:
        """Speed of ordinary Z moves, um/s (above 1 um/s near the surface risks a crash)."""
        return self._speed

    @Speed_um_per_s.setter
    def Speed_um_per_s(self, value: float) -> None:
        self._speed = float(value)

    def travel(self) -> tuple[float, float]:
        return self._travel

    @property
    def probe(self) -> str:
        """The controller's name of this probe (pre-init: fixed once initialized)."""
        return self._probe

    def resource(self) -> tuple[str, str]:
        return ("probe", str(self.get_property_value("Probe")))

    def set_position_um(self, val: float) -> None:
        val = float(val)
        zmin, zmax = self.travel()
        check_range(f"{self.get_label()} Z", val, zmin, zmax, "um")
        label, ctrl, probe, speed = self.get_label(), self.controller, self.probe, self._speed
        self.hub.check_not_latched(label, "a Z move")
        self.hub.check_z_move(label, val, ctrl.get_z_um(probe))
        self.start_operation(
            f"moving Z to {val:g} um",
            lambda abort: ctrl.move_z_um(probe, val, speed, abort),
            lambda *_: self._announce_position(),
        )

    def _announce_position(self) -> Callable[[], None]:
        """The end of a move, to emit once the device is idle."""
        label = self.get_label()
        try:
            z = float(self.controller.get_z_um(self.probe))
        except Exception as e:  # the link is gone: LastError already says why
            log.warning("%s: no position after the move: %s", label, e)
            return lambda: None
        return lambda: self.core.events.stagePositionChanged.emit(label, z)

    def get_position_um(self) -> float:
        return float(self.controller.get_z_um(self.probe))

    @pymm_property(is_read_only=True)
    def Interlock_MinZ_um(self) -> float:
        """Lowest Z a plain move may go down to now: the last contact height
        (NaN while none is known or the interlock is off), um."""
        return self.hub.interlock_floor_um(self.get_label())

    @pymm_property(is_read_only=True)
    def Interlock_LateralMinZ_um(self) -> float:
        """Lowest Z from which a lateral move is allowed now: the last contact
        height + the hub's Interlock_Margin_um (NaN while none is known or the
        interlock is off), um."""
        return self.hub.lateral_floor_um(self.get_label())

    @pymm_property(is_read_only=True)
    def ProbeHealth(self) -> str:
        """The pipette's state as the controller reports it: ok, clogged, broken
        (unknown when the controller cannot tell)."""
        health = getattr(self.controller, "probe_health", None)
        return str(health(self.probe)) if health is not None else "unknown"

    def get_focus_direction(self) -> FocusDirection:
        return FocusDirection.FocusDirectionAwayFromSample

    def set_focus_direction(self, sign: int) -> None:
        """Saved configs restore the direction; only 'away from the sample' is true."""
        if int(sign) not in (-1, int(FocusDirection.FocusDirectionAwayFromSample)):
            raise ValueError(
                f"focus direction {sign} is not possible: larger Z is always farther "
                "from the sample (direction -1)"
            )

    def set_origin(self) -> None:
        raise NotImplementedError("PiezoZ positions are absolute; the origin is fixed")

    def home(self) -> None:
        self.set_position_um(self.travel()[1])

    # --------------------------------------------------------------- approach
    @pymm_property(limits=(0.001, 100.0))
    def Approach_Speed_um_per_s(self) -> float:
        """Descent speed during the approach, um/s."""
        return self._ap_speed

    @Approach_Speed_um_per_s.setter
    def Approach_Speed_um_per_s(self, value: float) -> None:
        self._ap_speed = float(value)

    @pymm_property(limits=(-1000.0, 1000.0))
    def Approach_StopZ_um(self) -> float:
        """Lowest Z of the approach: reaching it without contact is a miss, um."""
        return self._ap_stop

    @Approach_StopZ_um.setter
    def Approach_StopZ_um(self, value: float) -> None:
        check_range("Approach_StopZ_um", value, *self.travel(), "um")
        self._ap_stop = float(value)

    @pymm_property(limits=(-1e-6, 1e-6))
    def Approach_Threshold_A(self) -> float:
        """Contact threshold, A (absolute level, or rise over the baseline)."""
        return self._ap_threshold

    @Approach_Threshold_A.setter
    def Approach_Threshold_A(self, value: float) -> None:
        if not float(value) > 0:
            raise ValueError(
                f"Approach_Threshold_A must be above 0 A (a threshold at or below zero "
                f"fires at once), got {value!r} A"
            )
        self._ap_threshold = float(value)

    @pymm_property(allowed_values=APPROACH_MODES)
    def Approach_Detection(self) -> str:
        """absolute: |I| >= threshold; rise: I - baseline >= threshold; either: |I - baseline|."""
        return self._ap_mode

    @Approach_Detection.setter
    def Approach_Detection(self, value: str) -> None:
        self._ap_mode = str(value)

    @pymm_property(limits=(0, 1000))
    def Approach_ConfirmSamples(self) -> int:
        """Further samples that must confirm a contact before the stage stops."""
        return self._ap_confirm

    @Approach_ConfirmSamples.setter
    def Approach_ConfirmSamples(self, value: int) -> None:
        if float(value) != int(float(value)):
            raise ValueError(f"Approach_ConfirmSamples must be a whole number, got {value!r}")
        self._ap_confirm = int(float(value))

    @pymm_property(allowed_values=("Idle", "Start", "Stop", "AcceptContact"))
    def Approach(self) -> str:
        """Start: begin the approach (returns at once; busy until it ends). Stop: abort it.
        AcceptContact: stop it and take where the stage stopped as the contact."""
        return "Start" if self._approach_running() else "Idle"

    def _approach_running(self) -> bool:
        return self.busy() and self.worker.last_what == "approach"

    @Approach.setter
    def Approach(self, value: str) -> None:
        if value == "Stop":
            self.stop()
            return
        if value == "AcceptContact":
            if not self._approach_running():
                raise ValueError(
                    f"{self.get_label()}: accepting a contact is refused: no approach is in "
                    f"progress (the last one ended with {self.Approach_Result!r}); a contact "
                    "can only be accepted while the pipette is coming down"
                )
            self._ap_accept = True
            self.stop()
            return
        if value != "Start":
            return
        ctrl, probe, label = self.controller, self.probe, self.get_label()
        z = ctrl.get_z_um(probe)
        stop_z = self._ap_stop
        if stop_z >= z:
            raise ValueError(
                f"Approach_StopZ_um {stop_z:g} um must be below the current Z "
                f"{z:g} um; nothing was changed"
            )
        self.hub.check_approach(label)
        args = (stop_z, self._ap_speed, self._ap_threshold, self._ap_mode, self._ap_confirm)

        def done(result: dict[str, Any] | None, error: BaseException | None) -> Any:
            accepted, self._ap_accept = self._ap_accept, False
            if (
                accepted
                and result is not None
                and result.get("reason") == "aborted"
                and (error is None or isinstance(error, OperationAborted))
                and not self.hub.latched
            ):
                # stopped by AcceptContact: where it stopped is the contact
                z_here = float(result.get("final_z_um", math.nan))
                result = {
                    **result,
                    "contact": True,
                    "contact_z_um": z_here,
                    "final_z_um": z_here,
                    "reason": "manual contact",
                }
                self.worker.last_error = None  # not a failure: what was asked
                error = None
            if result is None or (error is not None and not isinstance(error, OperationAborted)):
                result = {
                    "contact": False,
                    "contact_z_um": math.nan,
                    "reason": f"error: {error}",
                    "trace": np.empty((3, 0)),
                }
            self._ap_result = result
            if result["contact"]:
                xy = self.hub._xy_now()  # the lateral stage may be another hub's
                # the interlock keeps the higher of the reported contact and
                # where the stage stopped: a contact reported too low must not
                # open the way into the film
                z_guard = max(float(result["contact_z_um"]), float(result["final_z_um"]))
                self.hub.guard(label).record_contact(z_guard, xy)
            moved = self._announce_position()

            def announce() -> None:
                moved()
                self.core.events.propertyChanged.emit(
                    label, "Approach_Result", str(result["reason"])
                )

            return announce

        previous = self._ap_result
        self._ap_shown = np.empty((3, 0))
        self._ap_accept = False
        self._ap_result = {**previous, "reason": "running", "trace": np.empty((3, 0))}
        try:
            self.start_operation("approach", lambda abort: ctrl.approach(probe, *args, abort), done)
        except BaseException:
            self._ap_result = previous  # a refused start changes nothing
            raise

    @pymm_property(is_read_only=True)
    def Approach_Result(self) -> str:
        """Outcome of the last approach: contact, manual contact (accepted by
        hand), no contact, false trigger, aborted, error: ..., running (while
        it runs), idle."""
        return str(self._ap_result["reason"])

    @pymm_property(is_read_only=True)
    def Approach_DetectionLatency_s(self) -> float:
        """The last approach's detection latency: from the first current sample
        over the threshold to the stage stopped (NaN if the controller does not
        say); the overshoot past the contact is the approach speed times it, s."""
        return float(self._ap_result.get("detection_latency_s", math.nan))

    @pymm_property(is_read_only=True)
    def Approach_ContactZ_um(self) -> float:
        """Z at which the last approach first detected contact (NaN if none), um."""
        return float(self._ap_result["contact_z_um"])

    @pymm_property(is_read_only=True, property_type=str)
    def Approach_Trace(self) -> Any:
        """The last approach's samples as rows [t_s, z_um, I_A] (a numpy array)."""
        return self._ap_result["trace"]

    @pymm_property(is_read_only=True)
    def Approach_Trace_Samples(self) -> int:
        """Number of samples in ``Approach_Trace`` (0 while an approach runs)."""
        trace = self._ap_result.get("trace")
        return int(trace.shape[1]) if isinstance(trace, np.ndarray) and trace.ndim == 2 else 0

    @pymm_property(is_read_only=True, property_type=str)
    def Approach_Progress(self) -> Any:
        """The samples of the approach in progress recorded so far, rows
        [t_s, z_um, I_A] (a numpy array, t from the descent's start; each read
        holds the last one's samples and those recorded since: poll it for a
        live plot). Empty while it runs if the controller cannot say; once it
        has ended, the same as ``Approach_Trace``."""
        return self._progress()

    @pymm_property(is_read_only=True)
    def Approach_Progress_Samples(self) -> int:
        """Number of samples in ``Approach_Progress`` now."""
        return int(self._progress().shape[1])

    def _progress(self) -> np.ndarray:
        if not self._approach_running():
            trace = self._ap_result.get("trace")
            ok = isinstance(trace, np.ndarray) and trace.ndim == 2
            return trace if ok else np.empty((3, 0))
        report = getattr(self.controller, "approach_progress", None)
        rows = np.asarray(report(self.probe)) if report is not None else np.empty((3, 0))
        # never fewer than already shown (the controller hands its samples
        # over to the result as the approach ends)
        shown = self._ap_shown
        if rows.shape[1] >= shown.shape[1]:
            self._ap_shown = rows
        return self._ap_shown
