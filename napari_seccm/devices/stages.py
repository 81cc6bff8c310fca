"""Piezo stages: ``PiezoXY`` (lateral) and ``PiezoZ`` (the pipette's height).

Z is larger farther from the sample. Moves outside the travel raise a
``ValueError`` naming the value and the limit, and nothing moves. Every move
emits the core's position-changed event, so stage widgets follow.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pymmcore_plus.core._constants import FocusDirection
from pymmcore_plus.experimental.unicore import StageDevice, XYStageDevice, pymm_property

from ._base import BackendMixin, check_range, register

APPROACH_MODES = ("absolute", "rise", "either")


class PiezoXY(BackendMixin, XYStageDevice):
    """SECCM lateral piezo stage (positions in um, stage frame)."""

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
        self._travel = (
            float(g("XMin_um")),
            float(g("XMax_um")),
            float(g("YMin_um")),
            float(g("YMax_um")),
        )

    def travel(self) -> tuple[float, float, float, float]:
        return self._travel

    def set_position_um(self, x: float, y: float) -> None:
        xmin, xmax, ymin, ymax = self.travel()
        check_range(f"{self.get_label()} X", x, xmin, xmax, "um")
        check_range(f"{self.get_label()} Y", y, ymin, ymax, "um")
        self.backend.move_xy_um(float(x), float(y), self._speed)
        self.core.events.XYStagePositionChanged.emit(self.get_label(), float(x), float(y))

    def get_position_um(self) -> tuple[float, float]:
        return self.backend.get_xy_um()

    def set_origin_x(self) -> None:
        raise NotImplementedError("PiezoXY positions are absolute; the origin is fixed")

    def set_origin_y(self) -> None:
        raise NotImplementedError("PiezoXY positions are absolute; the origin is fixed")

    def home(self) -> None:
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        """Moves complete before returning; nothing to stop."""


class PiezoZ(BackendMixin, StageDevice):
    """SECCM Z piezo carrying the pipette; larger Z is farther from the sample.

    Besides ordinary moves it runs the instrument-side approach: set the
    ``Approach_*`` parameters, then set ``Approach`` to ``Start``. Z descends at
    ``Approach_Speed_um_per_s`` while the current is sampled; it stops at the
    first confirmed contact (``Approach_Result`` = ``contact``, the height in
    ``Approach_ContactZ_um``) or at ``Approach_StopZ_um`` (``no contact``).
    """

    def __init__(self) -> None:
        super().__init__()
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
        self._ap_result: dict[str, Any] = {
            "contact": False,
            "contact_z_um": math.nan,
            "reason": "idle",
            "trace": np.empty((3, 0)),
        }

    def initialize(self) -> None:
        super().initialize()
        self._travel = (
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

    def set_position_um(self, val: float) -> None:
        zmin, zmax = self.travel()
        check_range(f"{self.get_label()} Z", val, zmin, zmax, "um")
        self.backend.move_z_um(float(val), self._speed)
        self.core.events.stagePositionChanged.emit(self.get_label(), float(val))

    def get_position_um(self) -> float:
        return self.backend.get_z_um()

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

    def stop(self) -> None:
        """Moves complete before returning; nothing to stop."""

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

    @pymm_property(allowed_values=("Idle", "Start"))
    def Approach(self) -> str:
        """Set to Start to run the approach (returns when it has ended)."""
        return "Idle"

    @Approach.setter
    def Approach(self, value: str) -> None:
        if value != "Start":
            return
        z = self.get_position_um()
        if self._ap_stop >= z:
            raise ValueError(
                f"Approach_StopZ_um {self._ap_stop:g} um must be below the current Z "
                f"{z:g} um; nothing was changed"
            )
        self._ap_result = self.backend.approach(
            self._ap_stop, self._ap_speed, self._ap_threshold, self._ap_mode, self._ap_confirm
        )
        self.core.events.stagePositionChanged.emit(self.get_label(), self.get_position_um())

    @pymm_property(is_read_only=True)
    def Approach_Result(self) -> str:
        """Outcome of the last approach: contact, no contact, false trigger, idle."""
        return str(self._ap_result["reason"])

    @pymm_property(is_read_only=True)
    def Approach_ContactZ_um(self) -> float:
        """Z at which the last approach first detected contact (NaN if none), um."""
        return float(self._ap_result["contact_z_um"])

    @pymm_property(is_read_only=True, property_type=str)
    def Approach_Trace(self) -> Any:
        """The last approach's samples as rows [t_s, z_um, I_A] (a numpy array)."""
        return self._ap_result["trace"]
