"""Talking to asynchronous devices through the core: wait, abort, emergency stop.

Devices follow Micro-Manager's convention: a move, an approach or a waveform
starts and returns at once, ``busy()`` is true until it has ended, and
``core.stop(label)`` (stages) or ``Acquire = Abort`` (a potentiostat) ends it.
The functions here are what clients above the devices (the widgets, scripts,
the CLI) use; the engine has its own waits with deadlines per step.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from pymmcore_plus import CMMCorePlus

log = logging.getLogger(__name__)

ESTOP_PROP = "EmergencyStop"


class DeviceTimeout(RuntimeError):
    """A device was still busy when its time was up (it was told to stop)."""


def abort(core: CMMCorePlus, dev: str) -> None:
    """End what ``dev`` is doing now, without waiting for it (no device lock
    is taken for stages, so this reaches a device another thread waits on)."""
    try:
        if dev in (core.getXYStageDevice(), core.getFocusDevice()) or _is_stage(core, dev):
            core.stop(dev)
        elif core.hasProperty(dev, "Acquire"):
            core.setProperty(dev, "Acquire", "Abort")
        elif core.hasProperty(dev, "Approach"):
            core.setProperty(dev, "Approach", "Stop")
    except Exception as e:
        log.error("aborting %s failed: %s", dev, e)


def _is_stage(core: CMMCorePlus, dev: str) -> bool:
    from pymmcore_plus import DeviceType

    try:
        return core.getDeviceType(dev) in (DeviceType.XYStage, DeviceType.Stage)
    except Exception:
        return False


def wait_idle(
    core: CMMCorePlus,
    dev: str,
    timeout_s: float,
    what: str = "",
    should_stop: Callable[[], bool] | None = None,
    on_poll: Callable[[], None] | None = None,
) -> bool:
    """Wait until ``dev`` is not busy. Returns False if ``should_stop()`` asked
    to stop first (the device is then aborted); raises :class:`DeviceTimeout`
    (after aborting it) when ``timeout_s`` passes. Reports the device's
    ``LastError`` as a RuntimeError. ``on_poll()`` is called while it waits
    (e.g. an :class:`~.live.ApproachFeed`'s poll, which keeps its own pace)."""
    t_end = time.perf_counter() + timeout_s
    spins = 0
    while core.deviceBusy(dev):
        if should_stop is not None and should_stop():
            abort(core, dev)
            return False
        if time.perf_counter() > t_end:
            abort(core, dev)
            raise DeviceTimeout(
                f"{dev} did not finish {what or 'its operation'} within {timeout_s:g} s; "
                "it was told to stop"
            )
        if on_poll is not None:
            on_poll()
        time.sleep(0 if spins < 50 else 0.005)
        spins += 1
    if core.hasProperty(dev, "LastError"):
        err = core.getProperty(dev, "LastError")
        if err:
            raise RuntimeError(f"{dev}: {err}")
    return True


def latched_devices(core: CMMCorePlus) -> list[str]:
    """Devices whose emergency stop is latched."""
    out = []
    for dev in core.getLoadedDevices():
        if dev != "Core" and core.hasProperty(dev, ESTOP_PROP):
            with contextlib.suppress(Exception):
                if core.getProperty(dev, ESTOP_PROP) == "Latched":
                    out.append(dev)
    return out


def emergency_stop(core: CMMCorePlus, reason: str = "emergency stop") -> list[str]:
    """Halt every motion and waveform, switch every cell off, and latch.

    Every controller hub with an ``EmergencyStop`` property latches: its
    peripherals abort what they are doing and refuse every move and waveform,
    naming the latch, until :func:`reset_emergency_stop`. Every other stage
    (C++ adapters included) gets ``core.stop``, and every device with a
    ``Cell`` property is switched off. Returns what was done, one line each.
    Safe to call from any thread, a signal handler's thread included.
    """
    done: list[str] = []
    devs = [d for d in core.getLoadedDevices() if d != "Core"]
    log.error("EMERGENCY STOP: %s", reason)
    for dev in devs:  # hubs first: they abort all their peripherals at once
        if core.hasProperty(dev, ESTOP_PROP):
            try:
                if core.hasProperty(dev, ESTOP_PROP + "_Reason"):
                    core.setProperty(dev, ESTOP_PROP + "_Reason", reason)
                core.setProperty(dev, ESTOP_PROP, "Latched")
                why = ""
                if core.hasProperty(dev, ESTOP_PROP + "_Unconfirmed"):
                    why = str(core.getProperty(dev, ESTOP_PROP + "_Unconfirmed"))
                done.append(
                    f"{dev}: latched, but stopping its controller failed: {why}"
                    if why
                    else f"{dev}: latched"
                )
            except Exception as e:
                done.append(f"{dev}: latching failed: {e}")
    for dev in devs:
        if _is_stage(core, dev):
            try:
                core.stop(dev)
                done.append(f"{dev}: stopped")
            except Exception as e:
                done.append(f"{dev}: stop failed: {e}")
    for dev in devs:
        if core.hasProperty(dev, "Cell"):
            try:
                core.setProperty(dev, "Cell", "Off")
                done.append(f"{dev}: cell off")
            except Exception as e:
                done.append(f"{dev}: switching the cell off failed: {e}")
    with contextlib.suppress(Exception):
        core.mda.cancel()
    return done


def reset_emergency_stop(core: CMMCorePlus) -> list[str]:
    """Clear every latched emergency stop; moves are accepted again."""
    out = []
    for dev in latched_devices(core):
        core.setProperty(dev, ESTOP_PROP, "Clear")
        out.append(dev)
    return out


def simulated_devices(core: Any) -> list[str]:
    """The loaded devices that say they are a simulation (read-only property
    ``Simulated`` = ``Yes``): a scan on them measures no sample."""
    out = []
    for dev in core.getLoadedDevices():
        try:
            if core.hasProperty(dev, "Simulated") and core.getProperty(dev, "Simulated") == "Yes":
                out.append(dev)
        except Exception:  # a device that cannot answer is no simulation we know of
            continue
    return out


def accept_contact(core: CMMCorePlus, zdev: str = "") -> None:
    """Take where the Z stage is now as the contact of its approach in
    progress (a person saw the landing the threshold missed): the stage
    stops, ``Approach_Result`` reads ``manual contact``. Refused with a
    clear message when no approach is in progress or the stage has none."""
    zdev = zdev or core.getFocusDevice()
    if not zdev or not core.hasProperty(zdev, "Approach"):
        raise RuntimeError(
            f"{zdev or 'the focus stage'} has no device-side approach: no contact can be "
            "accepted by hand"
        )
    core.setProperty(zdev, "Approach", "AcceptContact")
