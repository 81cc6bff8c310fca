"""Controller hubs: the base of every SECCM controller, and how peripherals find it.

Micro-Manager groups the devices of one controller under a hub
(``#py Parent,PiezoZ,SECCM`` in a config). A hub here owns the controller
connection (a simulator, a PI GCS controller, a DAQ board, ...), the latched
emergency stop of everything behind it, and the interlocks of its probes, so
that every client of the core (a script, pymmcore-widgets, napari-micromanager,
the scan engine) meets the same safety.

UniMMCore gives a Python peripheral its parent's *label* but no handle on the
parent object, and initializes devices in parallel. Hubs therefore list
themselves in a weak set when they are created; a peripheral looks its parent up
by label (and, should two cores have hubs of one label, by the core they share)
and waits for the hub to finish initializing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pymmcore_plus.experimental.unicore import HubDevice

from ._base import PreInitFixedMixin, register

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._base import HubPeripheral

log = logging.getLogger(__name__)

_LIVE_HUBS: weakref.WeakSet[SECCMHub] = weakref.WeakSet()
_HUBS_LOCK = threading.Lock()

#: how long a peripheral waits for its hub to initialize, s
HUB_WAIT_S = 30.0

ESTOP_CLEAR = "Clear"
ESTOP_LATCHED = "Latched"


class EmergencyStopLatched(RuntimeError):
    """Refused: the emergency stop is latched."""


class InterlockError(ValueError):
    """Refused by an interlock: the move would endanger the probe."""


def _same_core(a: Any, b: Any) -> bool:
    """Whether two devices are loaded in one core: their core proxies share the
    core's signals (psygnal signal instances are the same object; Qt bound
    signals of one QObject compare equal)."""
    try:
        return bool(a.core.events.propertyChanged == b.core.events.propertyChanged)
    except AttributeError:
        return False


def live_hubs() -> list[SECCMHub]:
    """Every SECCM hub loaded now (in any core)."""
    with _HUBS_LOCK:
        return list(_LIVE_HUBS)


def find_hub(dev: Any) -> SECCMHub:
    """The initialized hub that is ``dev``'s parent (a clear error if none)."""
    parent = dev.get_parent_label()
    label = dev.get_label()
    if not parent:
        # a config saved by UniMMCore (0.18) keeps no '#py Parent' lines: the one
        # SECCM hub of this core is the parent
        with _HUBS_LOCK:
            mine = [h for h in _LIVE_HUBS if _same_core(h, dev)]
        if len(mine) != 1:
            raise RuntimeError(
                f"{label} has no parent hub: add '#py Parent,{label},<hub label>' to the "
                "config after the device lines (see micromanager_config/seccm_simulated.cfg)"
            )
        parent = mine[0].get_label()
        dev.set_parent_label(parent)
    with _HUBS_LOCK:
        found = [h for h in _LIVE_HUBS if h.get_label() == parent]
    if len(found) > 1:
        found = [h for h in found if _same_core(h, dev)]
    if not found:
        raise RuntimeError(
            f"{label}'s parent hub {parent!r} is not loaded (or is not an SECCM hub); "
            f"load it with '#py pyDevice,{parent},<module>,<hub class>'"
        )
    if len(found) > 1:
        raise RuntimeError(f"several loaded hubs are labelled {parent!r}; give each its own label")
    hub = found[0]
    if not hub._ready.wait(HUB_WAIT_S):
        raise RuntimeError(f"hub {parent!r} did not initialize within {HUB_WAIT_S:g} s")
    if hub._init_error is not None:
        raise RuntimeError(
            f"hub {parent!r} failed to initialize: {hub._init_error}"
        ) from hub._init_error
    return hub


def loaded_hub(label: str, cls: type[SECCMHub] | None = None) -> SECCMHub:
    """The one initialized hub of class ``cls`` labelled ``label`` (for tests,
    benchmarks and diagnostics, which look behind the core at the controller)."""
    cls = cls or SECCMHub
    with _HUBS_LOCK:
        hubs = [
            h
            for h in _LIVE_HUBS
            if isinstance(h, cls) and h.get_label() == label and h.controller is not None
        ]
    if not hubs:
        raise RuntimeError(f"no {cls.__name__} hub {label!r} is loaded and initialized")
    if len(hubs) > 1:
        raise RuntimeError(f"several {cls.__name__} hubs {label!r} are loaded")
    return hubs[0]


@dataclass
class ProbeGuard:
    """The interlock of one probe (one Z stage): where it last touched the surface.

    - A plain Z move (not the approach) may not go *down* below the last contact
      height: the approach is the only way toward the surface.
    - No lateral move while the probe is in contact or within ``margin_um``
      of the last contact height: the droplet would be dragged and the tip
      broken on a step.
    """

    z_label: str
    contact_z_um: float = math.nan
    contact_x_um: float = math.nan
    contact_y_um: float = math.nan

    def record_contact(self, z_um: float, xy: tuple[float, float] | None) -> None:
        self.contact_z_um = float(z_um)
        if xy is not None:
            self.contact_x_um, self.contact_y_um = float(xy[0]), float(xy[1])


class SECCMHub(PreInitFixedMixin, HubDevice):
    """Base of the SECCM controller hubs (simulated, PI, NI-DAQ, PalmSens, ...).

    Subclasses set ``PERIPHERALS`` and implement :meth:`make_controller`.
    """

    #: (class name, description) of the peripherals, importable from the hub's module
    PERIPHERALS: ClassVar[Sequence[tuple[str, str]]] = ()
    #: a simulation, not an instrument (the read-only property ``Simulated``)
    SIMULATED: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self.controller: Any = None
        self._latched = False
        self.latch_reason = ""
        self._pending_reason = ""
        # a device's own call may emit an event whose listener calls the core
        # about this device again (e.g. at TimeScale 0): reentrant
        self._lock = threading.RLock()
        self._interlock = True
        self._margin_um = 0.5
        self._tan_tilt = math.tan(math.radians(3.0))
        self._guards: dict[str, ProbeGuard] = {}
        self._peripherals: weakref.WeakSet[HubPeripheral] = weakref.WeakSet()
        self._z_stages: list[HubPeripheral] = []
        self._xy_stages: list[HubPeripheral] = []
        self._guard_lock = threading.Lock()
        with _HUBS_LOCK:
            _LIVE_HUBS.add(self)
        register(
            self,
            "EmergencyStop",
            ESTOP_CLEAR,
            "Latched: every motion and waveform of this controller is halted, the cell "
            "switched off, and every further move refused until set back to Clear",
            allowed_values=(ESTOP_CLEAR, ESTOP_LATCHED),
            getter=lambda d: ESTOP_LATCHED if d._latched else ESTOP_CLEAR,
            setter=lambda d, v: (
                d.emergency_stop(d._pending_reason or "the EmergencyStop property")
                if v == ESTOP_LATCHED
                else d.reset_emergency_stop()
            ),
        )
        register(
            self,
            "EmergencyStop_Reason",
            "",
            "why the emergency stop was latched (set it just before latching to record "
            "who or what stopped the instrument)",
            getter=lambda d: d.latch_reason if d._latched else d._pending_reason,
            setter=lambda d, v: setattr(d, "_pending_reason", str(v)),
        )
        #: why the last emergency stop may not have reached the instrument ('' if it did)
        self.estop_unconfirmed = ""
        register(
            self,
            "EmergencyStop_Unconfirmed",
            "",
            "empty when the last emergency stop reached the controller; otherwise why it "
            "may not have (the latch holds here all the same; stop the instrument by hand)",
            is_read_only=True,
            getter=lambda d: d.estop_unconfirmed if d._latched else "",
        )
        register(
            self,
            "Interlock",
            "On",
            "On: Z moves below the last contact height (other than the approach) and "
            "lateral moves near the surface are refused. Off: expert use only (logged)",
            allowed_values=("On", "Off"),
            getter=lambda d: "On" if d._interlock else "Off",
            setter=lambda d, v: d._set_interlock(v == "On"),
        )
        register(
            self,
            "Interlock_Margin_um",
            0.5,
            "lateral moves are refused while a probe is below its last contact height + this, um",
            limits=(0.0, 100.0),
            getter=lambda d: d._margin_um,
            setter=lambda d, v: d._set_margin(float(v)),
        )
        register(
            self,
            "Interlock_MaxTilt_deg",
            3.0,
            "steepest surface slope assumed away from the last contact: a plain Z move "
            "may not go below the contact height + tan(tilt) x the lateral distance, deg",
            limits=(0.0, 45.0),
            getter=lambda d: math.degrees(math.atan(d._tan_tilt)),
            setter=lambda d, v: setattr(d, "_tan_tilt", math.tan(math.radians(float(v)))),
        )
        register(
            self,
            "Simulated",
            "Yes" if self.SIMULATED else "No",
            "Yes: this controller is a simulation, not an instrument (scans and stores say so)",
            allowed_values=("Yes", "No"),
            is_read_only=True,
            getter=lambda d: "Yes" if d.SIMULATED else "No",
        )

    # ---------------------------------------------------------------- life
    def get_installed_peripherals(self) -> Sequence[tuple[str, str]]:
        return tuple(self.PERIPHERALS)

    def make_controller(self) -> Any:
        raise NotImplementedError

    def initialize(self) -> None:
        super().initialize()
        try:
            self.controller = self.make_controller()
        except BaseException as e:
            self._init_error = e
            raise
        finally:
            self._ready.set()

    def shutdown(self) -> None:
        """Stop everything and switch the cells off *before* closing the
        controller (unloading goes in load order: the hub comes first)."""
        self._halt()
        close = getattr(self.controller, "close", None)
        if close is not None:
            close()
        for p in list(self._peripherals):
            p._hub = None  # a peripheral left behind must not use a closed controller
        with _HUBS_LOCK:
            _LIVE_HUBS.discard(self)

    def _halt(self) -> None:
        """Abort every operation and switch every cell off (controller first:
        it may halt the hardware at once and reach channels no device has)."""
        ctrl = self.controller
        self.estop_unconfirmed = ""
        for hook in ("emergency_stop", "cells_off"):
            fn = getattr(ctrl, hook, None)
            if fn is not None:
                try:
                    fn()
                except Exception as e:
                    # latched here all the same; the instrument itself may not have
                    # stopped, and whoever pressed the button must hear it
                    self.estop_unconfirmed = f"the controller was not reached: {e}"
                    log.error("%s: controller %s failed: %s", self.get_label(), hook, e)
                break
        for p in list(self._peripherals):
            p.worker.abort()
        for p in list(self._peripherals):
            try:
                p.on_emergency_stop()
            except Exception as e:  # keep going: the others must still stop
                log.error("%s: stopping %s: %s", self.get_label(), p.get_label(), e)

    def attach(self, dev: HubPeripheral) -> None:
        """A peripheral joins; two that would drive the same probe or channel are refused."""
        key = dev.resource()
        if key is not None:
            for other in self._peripherals:
                if other is not dev and other.resource() == key:
                    raise RuntimeError(
                        f"{dev.get_label()} and {other.get_label()} of {self.get_label()} "
                        f"would both drive {key[0]} {key[1]!r}: give each its own"
                    )
        self._peripherals.add(dev)
        self._z_stages = [p for p in self._peripherals if p.IS_Z_STAGE]
        self._xy_stages = [p for p in self._peripherals if p.IS_XY_STAGE]

    def detach(self, dev: HubPeripheral) -> None:
        self._peripherals.discard(dev)
        self._z_stages = [p for p in self._peripherals if p.IS_Z_STAGE]
        self._xy_stages = [p for p in self._peripherals if p.IS_XY_STAGE]

    # ------------------------------------------------------ emergency stop
    @property
    def latched(self) -> bool:
        return self._latched

    def emergency_stop(self, reason: str = "") -> None:
        """Halt every motion and waveform, switch the cells off, and latch.

        Takes no device lock: the aborts reach operations in progress at once."""
        self._latched = True
        self.latch_reason = reason or "emergency stop"
        self._pending_reason = ""
        self._halt()
        log.error("%s: EMERGENCY STOP latched (%s)", self.get_label(), self.latch_reason)
        self._emit("EmergencyStop", ESTOP_LATCHED)

    def reset_emergency_stop(self) -> None:
        if self._latched:
            log.warning("%s: emergency stop reset", self.get_label())
        self._latched = False
        self.latch_reason = ""
        self._pending_reason = ""
        self._emit("EmergencyStop", ESTOP_CLEAR)

    def check_not_latched(self, who: str, what: str) -> None:
        if self._latched:
            raise EmergencyStopLatched(
                f"{who}: {what} refused: the emergency stop of {self.get_label()} is latched "
                f"({self.latch_reason}); nothing moves until it is reset "
                "(napari_seccm.reset_emergency_stop(core), or the Reset button)"
            )

    def _emit(self, prop: str, value: Any) -> None:
        with contextlib.suppress(AttributeError):  # not loaded in a core
            self.core.events.propertyChanged.emit(self.get_label(), prop, str(value))

    # ---------------------------------------------------------- interlocks
    def _set_margin(self, value: float) -> None:
        if value != self._margin_um:
            log.warning(
                "%s: interlock margin %g -> %g um", self.get_label(), self._margin_um, value
            )
        self._margin_um = value

    def _set_interlock(self, on: bool) -> None:
        if not on and self._interlock:
            log.warning(
                "%s: interlocks switched OFF: Z moves below the contact height and lateral "
                "moves near the surface are no longer refused",
                self.get_label(),
            )
        elif on and not self._interlock:
            log.warning("%s: interlocks switched back on", self.get_label())
        self._interlock = on

    def guard(self, z_label: str) -> ProbeGuard:
        g = self._guards.get(z_label)
        if g is None:
            with self._guard_lock:
                g = self._guards.setdefault(z_label, ProbeGuard(z_label))
        return g

    def _xy_now(self) -> tuple[float, float] | None:
        """Where the lateral stage is (of any SECCM hub of this core), if any."""
        for hub in self._core_hubs():
            for xy in hub._xy_stages:
                try:
                    return xy.get_position_um()
                except Exception:
                    return None
        return None

    def interlock_floor_um(self, z_label: str) -> float:
        """Lowest Z a plain move of ``z_label`` may go down to here (NaN: no
        limit): the last contact height, raised by tan(max tilt) x the lateral
        distance from that contact (the surface may rise that much)."""
        if not self._interlock:
            return math.nan
        g = self.guard(z_label)
        floor = g.contact_z_um
        if math.isfinite(floor) and math.isfinite(g.contact_x_um):
            xy = self._xy_now()
            if xy is not None:
                d = math.hypot(xy[0] - g.contact_x_um, xy[1] - g.contact_y_um)
                floor += self._tan_tilt * d
        return floor

    def lateral_floor_um(self, z_label: str) -> float:
        """Lowest Z of ``z_label`` from which a lateral move is allowed (NaN: any)."""
        return self.interlock_floor_um(z_label) + self._margin_um

    def _core_hubs(self) -> list[SECCMHub]:
        """The SECCM hubs of this hub's core, this one first: the interlocks
        span controllers (a PI stage's XY, an NI-DAQ's Z)."""
        others = [h for h in live_hubs() if h is not self and _same_core(h, self)]
        return [self, *others]

    def _xy_busy(self) -> str:
        return next(
            (xy.get_label() for h in self._core_hubs() for xy in h._xy_stages if xy.busy()), ""
        )

    def check_z_move(self, z_label: str, target_um: float, current_um: float) -> None:
        """Refuse a plain move down below the interlock's floor, or down while
        a lateral move is under way."""
        if not self._interlock or target_um >= current_um:
            return
        moving = self._xy_busy()
        if moving:
            raise InterlockError(
                f"{z_label}: refusing to move Z down while {moving} is moving laterally; "
                "nothing moved"
            )
        floor = self.interlock_floor_um(z_label)
        if math.isfinite(floor) and target_um < floor:
            raise InterlockError(
                f"{z_label}: refusing to move Z down to {target_um:.3f} um: below the last "
                f"contact height ({floor:.3f} um here, with the tilt allowance), the pipette "
                "would be driven into the sample. Use the approach to go toward the surface; "
                f"nothing moved ({self.get_label()} Interlock = Off lifts this, for experts)"
            )

    def check_approach(self, z_label: str) -> None:
        """Refuse an approach while a lateral move is under way."""
        moving = self._xy_busy()
        if self._interlock and moving:
            raise InterlockError(
                f"{z_label}: refusing to approach while {moving} is moving laterally "
                "(the landing would be at another place); nothing moved"
            )

    def check_xy_move(self, xy_label: str) -> None:
        """Refuse a lateral move while a probe is moving, in contact or near its
        last contact."""
        if not self._interlock:
            return
        for hub in self._core_hubs():
            if not hub._interlock:
                continue
            for zdev in hub._z_stages:
                z_label = zdev.get_label()
                if zdev.busy():
                    raise InterlockError(
                        f"{xy_label}: lateral move refused while {z_label} is moving "
                        f"({zdev.worker.last_what}); nothing moved"
                    )
                g = hub.guard(z_label)
                if not math.isfinite(g.contact_z_um):
                    continue
                z = zdev.get_position_um()
                clear = g.contact_z_um + hub._margin_um
                if z < clear:
                    raise InterlockError(
                        f"{xy_label}: lateral move refused: {z_label} is at {z:.3f} um, within "
                        f"{hub._margin_um:g} um of (or below) its last contact height "
                        f"{g.contact_z_um:.3f} um; the droplet would be dragged. Lift Z to at "
                        f"least {clear:.3f} um first; nothing moved"
                    )

    def z_stages(self) -> list[HubPeripheral]:
        """The Z stages (probes) behind this hub."""
        return self._z_stages
