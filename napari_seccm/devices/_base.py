"""Shared plumbing of the SECCM devices: backend selection and range checks."""

from __future__ import annotations

from typing import Any

from pymmcore_plus.experimental.unicore import Device

from .backends import get_backend

#: pre-init property naming the backend ("simulated" unless hardware is added)
BACKEND_PROP = "Backend"
#: pre-init property naming the shared rig (devices with the same name share it)
RIG_PROP = "Rig"


def register(dev: Device, name: str, default: Any, description: str, **kwargs: Any) -> None:
    """``register_property`` plus a description (shown by property browsers)."""
    dev.register_property(name, default_value=default, **kwargs)
    dev.get_property_info(name).description = description


class BackendMixin(Device):
    """Adds the ``Backend`` and ``Rig`` pre-init properties and ``self.backend``."""

    def __init__(self) -> None:
        super().__init__()
        register(
            self,
            BACKEND_PROP,
            "simulated",
            "hardware behind this device: 'simulated' or a registered hardware backend",
            is_pre_init=True,
        )
        register(
            self,
            RIG_PROP,
            "default",
            "name of the shared instrument: devices with the same Rig share one",
            is_pre_init=True,
        )
        self._backend: Any = None
        self._pre_init_fixed = False

    def initialize(self) -> None:
        self._backend = get_backend(
            str(self.get_property_value(BACKEND_PROP)), str(self.get_property_value(RIG_PROP))
        )
        self._pre_init_fixed = True

    def set_property_value(self, prop_name: str, value: Any) -> None:
        """As the base class, but a pre-initialization property cannot change once
        the device is initialized (the device would not follow it)."""
        if self._pre_init_fixed and self.get_property_info(prop_name).is_pre_init:
            raise ValueError(
                f"{self.get_label()} {prop_name} is a pre-initialization property (now "
                f"{self.get_property_value(prop_name)!r}); it cannot be changed to {value!r} "
                "after initialization: set it in the config before the device initializes"
            )
        super().set_property_value(prop_name, value)

    @property
    def backend(self) -> Any:
        if self._backend is None:
            raise RuntimeError(f"device {self.get_label()!r} is not initialized")
        return self._backend


def check_range(what: str, value: float, lo: float, hi: float, unit: str) -> None:
    """Raise a ValueError naming the value and the limit when out of [lo, hi]."""
    if not lo <= value <= hi:
        limit = f"minimum {lo:g} {unit}" if value < lo else f"maximum {hi:g} {unit}"
        raise ValueError(
            f"{what} {value:g} {unit} is outside the allowed range "
            f"[{lo:g}, {hi:g}] {unit} ({limit}); nothing was changed"
        )
