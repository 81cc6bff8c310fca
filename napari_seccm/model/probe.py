"""A probe: a pipette on a Z stage, wired to a potentiostat channel.

:class:`PipetteGeometry` is what the analysis needs to turn a measured
resistance into a local conductivity (the series model): the tip, the cone, the
electrolyte and the droplet's footprint. It belongs to the plan (the user's
pipette), so that every store records it, whatever instrument measured it.

:class:`ProbeSpec` names the devices a probe uses; today a scan has one probe,
``"A"``, on the core's focus device and the ``Potentiostat``; a second pipette
(a dual-probe measurement) gets its own.

Every number carries its unit in its field name.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PipetteGeometry", "ProbeSpec"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class PipetteGeometry(_Model):
    """The pipette and its droplet, for the series model of the analysis."""

    tip_radius_nm: float = Field(
        50.0, ge=1.0, le=10_000.0, description="inner radius of the pipette's tip"
    )
    half_angle_deg: float = Field(
        5.0, ge=0.1, le=45.0, description="half-cone angle of the pipette's taper"
    )
    electrolyte_S_per_cm: float = Field(
        1e-2, ge=1e-6, le=1.0, description="conductivity of the electrolyte filling the pipette"
    )
    footprint_radius_nm: float = Field(
        75.0,
        ge=1.0,
        le=100_000.0,
        description="radius of the droplet's footprint on the sample (the contact disk)",
    )


class ProbeSpec(_Model):
    """One probe: its name, its Z stage, its potentiostat and its pipette."""

    name: str = Field("A", min_length=1, description="the probe's name")
    z_stage: str = Field(
        "", description="Micro-Manager label of its Z stage ('': the core's focus device)"
    )
    potentiostat: str = Field(
        "Potentiostat", min_length=1, description="Micro-Manager label of its potentiostat"
    )
    pipette: PipetteGeometry = Field(default_factory=PipetteGeometry)
