"""Shared plumbing of the SECCM devices: properties, range checks, hub peripherals."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from pymmcore_plus.experimental.unicore import Device

from ._async import DeviceWorker

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._hub import SECCMHub


def register(dev: Device, name: str, default: Any, description: str, **kwargs: Any) -> None:
    """``register_property`` plus a description (shown by property browsers)."""
    dev.register_property(name, default_value=default, **kwargs)
    dev.get_property_info(name).description = description


def check_range(what: str, value: float, lo: float, hi: float, unit: str) -> None:
    """Raise a ValueError naming the value and the limit when out of [lo, hi]
    (a NaN is refused too)."""
    if not lo <= value <= hi:
        if math.isnan(value):
            raise ValueError(f"{what} is not a number ({value!r}); nothing was changed")
        limit = f"minimum {lo:g} {unit}" if value < lo else f"maximum {hi:g} {unit}"
        raise ValueError(
            f"{what} {value:g} {unit} is outside the allowed range "
            f"[{lo:g}, {hi:g}] {unit} ({limit}); nothing was changed"
        )


class PreInitFixedMixin(Device):
    """A pre-initialization property cannot change once the device is
    initialized (the device would not follow it)."""

    def __init__(self) -> None:
        super().__init__()
        self._pre_init_fixed = False

    def initialize(self) -> None:
        self._pre_init_fixed = True

    def set_property_value(self, prop_name: str, value: Any) -> None:
        if self._pre_init_fixed and self.get_property_info(prop_name).is_pre_init:
            raise ValueError(
                f"{self.get_label()} {prop_name} is a pre-initialization property (now "
                f"{self.get_property_value(prop_name)!r}); it cannot be changed to {value!r} "
                "after initialization: set it in the config before the device initializes"
            )
        super().set_property_value(prop_name, value)


class HubPeripheral(PreInitFixedMixin):
    """A device behind an SECCM controller hub (its parent in the config).

    It reaches the hardware through ``self.hub.controller``; long operations
    run on ``self.worker`` (start, ``busy()``, ``stop()``), and each is refused
    while the hub's emergency stop is latched.
    """

    IS_Z_STAGE = False
    IS_XY_STAGE = False

    def __init__(self) -> None:
        super().__init__()
        # UniMMCore holds this lock during every call to the device; at
        # TimeScale 0 an operation ends (and emits its events) inside that
        # call, and a listener may ask the core about this device again
        self._lock = threading.RLock()
        self._hub: SECCMHub | None = None
        self.worker = DeviceWorker(type(self).__name__)
        register(
            self,
            "LastError",
            "",
            "why the last operation (move, approach, waveform) failed; empty if it succeeded",
            is_read_only=True,
            getter=lambda d: "" if d.worker.last_error is None else str(d.worker.last_error),
        )

    def initialize(self) -> None:
        from ._hub import find_hub

        super().initialize()
        self.worker.name = self.get_label()
        self._hub = find_hub(self)
        self._controller = self._hub.controller
        self._hub.attach(self)

    def shutdown(self) -> None:
        self.worker.close()
        if self._hub is not None:
            self._hub.detach(self)

    @property
    def hub(self) -> SECCMHub:
        if self._hub is None:
            raise RuntimeError(f"device {self.get_label()!r} is not initialized")
        return self._hub

    @property
    def controller(self) -> Any:
        """The hub's controller (the connection to the hardware or simulator)."""
        if self._hub is None:
            raise RuntimeError(f"device {self.get_label()!r} is not initialized")
        return self._controller

    def busy(self) -> bool:
        return self.worker.busy()

    def stop(self) -> None:
        """Abort the operation in progress (no lock: reaches a busy device)."""
        self.worker.abort()

    def on_emergency_stop(self) -> None:
        """Called by the hub after it has aborted every operation."""

    def resource(self) -> tuple[str, str] | None:
        """What of the controller this device drives exclusively (a probe, a
        channel), so that the hub refuses a second device on it."""
        return None

    def start_operation(
        self,
        what: str,
        op: Callable[[threading.Event], Any],
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        hub = self.hub
        hub.check_not_latched(self.get_label(), what)
        if getattr(self.controller, "runs_inline", False):
            # the controller takes no wall time (a simulator in fast mode):
            # done before the call returns, as an instant device would be
            self.worker.run_inline(what, op, on_done)
        else:
            self.worker.start(what, op, on_done)
            if hub.latched:
                # latched between the check and the start (the hub's abort may
                # have reached the worker before this operation): abort it now
                self.worker.abort()
