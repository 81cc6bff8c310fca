"""``OpticalCamera``: the SECCM's optical microscope, looking at the pipette tip.

The image is centred on the stage position: pixel ``[row, col]`` of an
``(h, w)`` image shows the sample at ``x = X + (col - (w-1)/2) * PixelSize_um``,
``y = Y + (row - (h-1)/2) * PixelSize_um``. Keep the core's pixel-size
configuration equal to ``PixelSize_um`` (the shipped configs do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pymmcore_plus.experimental.unicore import SimpleCameraDevice, pymm_property

from ._base import HubPeripheral, register

if TYPE_CHECKING:
    from collections.abc import Mapping


class OpticalCamera(HubPeripheral, SimpleCameraDevice):
    """Reflected-light camera of the SECCM (12-bit, 512 x 512 by default)."""

    def __init__(self) -> None:
        super().__init__()
        register(
            self, "SensorWidth_px", 512, "sensor width, pixels", limits=(8, 8192), is_pre_init=True
        )
        register(
            self,
            "SensorHeight_px",
            512,
            "sensor height, pixels",
            limits=(8, 8192),
            is_pre_init=True,
        )
        self._exposure = 10.0
        self._pixel_um = 0.1

    def sensor_shape(self) -> tuple[int, int]:
        return (
            int(self.get_property_value("SensorHeight_px")),
            int(self.get_property_value("SensorWidth_px")),
        )

    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16)

    def get_exposure(self) -> float:
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        if not 0.01 <= exposure <= 10_000:
            raise ValueError(f"exposure {exposure} ms is outside [0.01, 10000] ms")
        self._exposure = float(exposure)

    @pymm_property(limits=(0.001, 100.0))
    def PixelSize_um(self) -> float:
        """Size of a camera pixel on the sample, um (match the core's pixel config)."""
        return self._pixel_um

    @PixelSize_um.setter
    def PixelSize_um(self, value: float) -> None:
        self._pixel_um = float(value)

    def snap(self, buffer: np.ndarray) -> Mapping:
        buffer[:] = self.controller.snap(buffer.shape, self._pixel_um, self._exposure)
        return {"PixelSize_um": self._pixel_um}
