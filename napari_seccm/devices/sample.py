"""``Sample``: describes the simulated film and pipette, and runs the simulation.

Initializing this device starts a fresh simulated experiment (a new rig, with
the pipette 30 um above the film). Each film and pipette parameter is a
property with its unit in its name; setting one rebuilds the film at once, so
a config file or a test can describe another sample. The table of properties
is ``FILM_PROPERTIES`` and ``PIPETTE_PROPERTIES`` below (also in
``docs/devices.md``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pymmcore_plus.experimental.unicore import GenericDevice, pymm_property

from ._base import RIG_PROP, register
from ._simulated import get_rig, new_rig
from ..simulation import PIPETTE_STATES, FilmParameters, PipetteParameters

# property name -> (field, limits or allowed values, description)
FILM_PROPERTIES: dict[str, tuple[str, Any, str]] = {
    "Thickness_nm": ("thickness_nm", (1.0, 10_000.0), "film thickness"),
    "SigmaFast_S_per_cm": (
        "sigma_fast_S_per_cm",
        (1e-9, 1.0),
        "ab-plane (fast) ionic conductivity",
    ),
    "Anisotropy": ("anisotropy", (1.0, 1e4), "sigma_fast / sigma_slow (c axis)"),
    "SigmaFilm_S_per_cm": (
        "sigma_film_S_per_cm",
        (1e-9, 1.0),
        "in-plane conductivity of the film term",
    ),
    "StripePeriod_um": ("stripe_period_um", (0.0, 1000.0), "period of the [001] stripes (0: none)"),
    "StripeFraction001": ("stripe_fraction_001", (0.0, 1.0), "width fraction of [001] in a period"),
    "StripeAngle_deg": (
        "stripe_angle_deg",
        (-360.0, 360.0),
        "direction along the stripes, CCW from +x",
    ),
    "StripeOffset_um": (
        "stripe_offset_um",
        (-1000.0, 1000.0),
        "shift of the stripes across their direction",
    ),
    "StripeJitter_um": ("stripe_jitter_um", (0.0, 100.0), "rms wander of the stripe edges"),
    "DomainMapFile": (
        "domain_map_file",
        None,
        "label image (.npy/.tif; >0 = [001]) replacing the stripes",
    ),
    "DomainMapPixel_um": ("domain_map_pixel_um", (1e-4, 100.0), "pixel size of the label image"),
    "DomainMapOriginX_um": (
        "domain_map_origin_x_um",
        (-1e4, 1e4),
        "x of the label image's first column",
    ),
    "DomainMapOriginY_um": (
        "domain_map_origin_y_um",
        (-1e4, 1e4),
        "y of the label image's first row",
    ),
    "GrainSize_um": (
        "grain_size_um",
        (0.0, 1000.0),
        "mean grain size of the GB network (0: one grain)",
    ),
    "GBWidth_nm": ("gb_width_nm", (0.1, 1000.0), "width of a grain boundary"),
    "GBConductivityFactor": ("gb_conductivity_factor", (1e-8, 1.0), "sigma_GB / sigma_bulk"),
    "PadEdgeX_um": ("pad_edge_x_um", (-1e4, 1e4), "the Au pad covers x < this"),
    "PadCapacitance_F": (
        "pad_capacitance_F",
        (1e-12, 1.0),
        "capacitance of the blocking Au contact",
    ),
    "PadLeak_ohm": ("pad_leak_ohm", (1.0, 1e15), "leak resistance of the Au contact"),
    "ASR_ohm_cm2": ("asr_ohm_cm2", (0.0, 1e6), "area-specific Li+ transfer resistance"),
    "Cdl_uF_per_cm2": ("cdl_uF_per_cm2", (0.0, 1000.0), "double-layer capacitance"),
    "RestPotential_V": ("rest_potential_V", (-5.0, 5.0), "potential at which no current flows"),
    "LeakageEnabled": ("leakage_enabled", (0, 1), "electronic leakage below the onset (1: on)"),
    "LeakageOnset_V": ("leakage_onset_V", (-5.0, 5.0), "onset potential of electronic leakage"),
    "LeakageResistance_ohm": (
        "leakage_resistance_ohm",
        (1.0, 1e15),
        "resistance of the leakage branch",
    ),
    "HeightOffset_um": ("height_offset_um", (-1e3, 1e3), "mean surface height in the Z frame"),
    "TiltX_um_per_um": ("tilt_x_um_per_um", (-1.0, 1.0), "surface slope along x"),
    "TiltY_um_per_um": ("tilt_y_um_per_um", (-1.0, 1.0), "surface slope along y"),
    "Roughness_nm": ("roughness_nm", (0.0, 1000.0), "rms roughness"),
    "RoughnessLength_um": (
        "roughness_length_um",
        (0.01, 1000.0),
        "correlation length of the roughness",
    ),
    "StepHeight_nm": ("step_height_nm", (-1000.0, 1000.0), "height of substrate steps (0: none)"),
    "StepSpacing_um": ("step_spacing_um", (0.01, 1000.0), "terrace width"),
    "StepAngle_deg": ("step_angle_deg", (-360.0, 360.0), "direction along the step edges"),
}

PIPETTE_PROPERTIES: dict[str, tuple[str, Any, str]] = {
    "Pipette_TipRadius_nm": ("tip_radius_nm", (1.0, 10_000.0), "inner tip radius"),
    "Pipette_HalfAngle_deg": ("half_angle_deg", (0.1, 45.0), "half-cone angle"),
    "Pipette_Electrolyte_S_per_cm": (
        "electrolyte_S_per_cm",
        (1e-6, 1.0),
        "conductivity of the filling",
    ),
    "Pipette_FootprintRadius_nm": (
        "footprint_radius_nm",
        (1.0, 100_000.0),
        "droplet footprint radius",
    ),
    "Pipette_MeniscusHeight_um": (
        "meniscus_height_um",
        (0.0, 10.0),
        "tip height at which the meniscus lands",
    ),
    "Pipette_DetachHeight_um": (
        "detach_height_um",
        (0.0, 20.0),
        "tip height at which it detaches on retract",
    ),
    "Pipette_CrashDepth_um": (
        "crash_depth_um",
        (0.0, 10.0),
        "depth into the surface that breaks the tip",
    ),
}


class Sample(GenericDevice):
    """The simulated LLTO film and pipette, and the simulation's settings."""

    def __init__(self) -> None:
        super().__init__()
        register(
            self,
            RIG_PROP,
            "default",
            "name of the simulated instrument this sample belongs to",
            is_pre_init=True,
        )
        register(
            self,
            "Seed",
            0,
            "seed of every random element (film, noise): same seed, same experiment",
            limits=(0, 2**31 - 1),
            is_pre_init=True,
        )
        self._film = FilmParameters()
        self._pipette = PipetteParameters()
        for name, (fld, spec, desc) in FILM_PROPERTIES.items():
            self._register(name, fld, spec, desc, self._film)
        for name, (fld, spec, desc) in PIPETTE_PROPERTIES.items():
            self._register(name, fld, spec, desc, self._pipette)
        self._time_scale = 0.0

    def _register(self, name: str, fld: str, spec: Any, desc: str, target: Any) -> None:
        is_film = target is self._film
        current = getattr(target, fld)

        def getter(dev: Sample) -> Any:
            obj = dev._film if is_film else dev._pipette
            val = getattr(obj, fld)
            return int(val) if isinstance(val, bool) else val

        def setter(dev: Sample, value: Any) -> None:
            dev._apply(is_film, fld, value)

        default = int(current) if isinstance(current, bool) else current
        self.register_property(
            name,
            default_value=default,
            getter=getter,
            setter=setter,
            property_type=type(default),
            limits=spec,
        )
        self.get_property_info(name).description = desc

    def _apply(self, is_film: bool, fld: str, value: Any) -> None:
        obj = self._film if is_film else self._pipette
        old = getattr(obj, fld)
        value = bool(int(float(value))) if isinstance(old, bool) else type(old)(value)
        new = dataclasses.replace(obj, **{fld: value})
        if is_film:
            self.rig.set_film(new)  # may raise (e.g. a missing domain map file)
            self._film = new
        else:
            with self.rig.lock:
                for probe in self.rig.probes.values():
                    probe.pipette = new
            self._pipette = new

    @property
    def rig(self):
        return get_rig(str(self.get_property_value(RIG_PROP)))

    def initialize(self) -> None:
        rig = new_rig(
            str(self.get_property_value(RIG_PROP)),
            film=self._film,
            seed=int(float(self.get_property_value("Seed"))),
            time_scale=self._time_scale,
        )
        for probe in rig.probes.values():
            probe.pipette = self._pipette
            probe.z_um = rig.surface_um(0.0, 0.0) + 30.0

    @pymm_property(limits=(0.0, 100.0))
    def TimeScale(self) -> float:
        """0: instrument waits take no wall time; 1: real time; 0.1: ten times faster."""
        return self._time_scale

    @TimeScale.setter
    def TimeScale(self, value: float) -> None:
        self._time_scale = float(value)
        self.rig.clock.time_scale = float(value)

    @pymm_property(is_read_only=True)
    def SimTime_s(self) -> float:
        """Instrument time elapsed in the simulation, s."""
        return self.rig.clock.now

    @pymm_property(allowed_values=PIPETTE_STATES)
    def Pipette_State(self) -> str:
        """ok, clogged or broken (a crash breaks it; set ok to fit a new pipette)."""
        return self.rig.probe().state

    @Pipette_State.setter
    def Pipette_State(self, value: str) -> None:
        with self.rig.lock:
            self.rig.probe().state = str(value)

    @pymm_property(is_read_only=True)
    def SurfaceHeight_um(self) -> float:
        """True surface height under the pipette, um (the simulator's ground truth)."""
        return self.rig.surface_um()

    @pymm_property(allowed_values=("none", "xy", "z", "potentiostat"))
    def InjectFailure(self) -> str:
        """Make a device fail on every use until set back to none (for testing error handling)."""
        return self.rig.failure or "none"

    @InjectFailure.setter
    def InjectFailure(self, value: str) -> None:
        self.rig.failure = "" if value == "none" else str(value)

    @pymm_property(limits=(0.0, 1e-6))
    def MainsPickup_A(self) -> float:
        """Amplitude of 50 Hz mains pickup on the current, A (0: none)."""
        return self.rig.probe().amplifier.mains_A

    @MainsPickup_A.setter
    def MainsPickup_A(self, value: float) -> None:
        self.rig.probe().amplifier.mains_A = float(value)
