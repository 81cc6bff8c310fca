"""The series model of one landing, inverted: from a measured resistance to the
local spreading resistance and the local conductivity of the film.

One landing (disk contact of radius ``a``) is, in series (``docs`` and
``/work/shared/DOMAIN.md``)::

    R_total = R_pipette + R_interface + R_spreading + R_film

- ``R_pipette = rho / (pi r tan(theta))`` (conical pipette, tip radius r),
- ``R_interface = ASR / (pi a^2)``,
- ``R_spreading = 1 / (4 a sigma)`` for an isotropic film (Holm); for an
  anisotropic film the conductance of a disk on a half-space with principal
  conductivities ``(sx, sy, sz)`` is
  ``sqrt(sx sy sz) 2 pi alpha / K(1 - beta^2 / alpha^2)`` with the ellipse
  semi-axes ``alpha = a / sqrt(min(sx, sy)) >= beta = a / sqrt(max(sx, sy))``,
- ``R_film = ln(L / a) / (2 pi sigma_film t)``: the thin film collected by
  the Au pad at distance ``L = x - PadEdgeX``.

The formulas are those of :mod:`napari_seccm.simulation.physics` (numpy/scipy
only, nothing of Micro-Manager): one implementation, which the tests check
against textbook values.

Where the parameters come from (:meth:`SeriesModel.from_meta`), first found
wins: the arguments; for the pipette, the plan recorded in the store
(``meta["plan"]["pipette"]``, a :class:`~napari_seccm.model.PipetteGeometry`);
then the store's rig snapshot (the simulated film's device properties, and
the pipette of stores written before plans recorded it).

Units: the dataclass fields and the function names carry their units; the
formulas work in SI.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..model.probe import PipetteGeometry
from ..simulation import physics

#: SeriesModel field -> the device property that holds it in a store's rig
#: snapshot (``meta["rig"]["devices"][label]``: the simulated ``Sample``
#: device's, or any other device that has the property)
RIG_PROPERTIES: dict[str, str] = {
    "tip_radius_nm": "Pipette_TipRadius_nm",
    "half_angle_deg": "Pipette_HalfAngle_deg",
    "electrolyte_S_per_cm": "Pipette_Electrolyte_S_per_cm",
    "footprint_radius_nm": "Pipette_FootprintRadius_nm",
    "thickness_nm": "Thickness_nm",
    "sigma_film_S_per_cm": "SigmaFilm_S_per_cm",
    "pad_edge_x_um": "PadEdgeX_um",
    "asr_ohm_cm2": "ASR_ohm_cm2",
}

#: SeriesModel fields that a plan records under ``pipette`` (same names)
PIPETTE_FIELDS: tuple[str, ...] = tuple(PipetteGeometry.model_fields)


def _plan_pipette(meta: dict[str, Any] | None) -> dict[str, Any]:
    """``meta["plan"]["pipette"]``, or {} (a store from before plans recorded it)."""
    plan = (meta or {}).get("plan") or {}
    pip = plan.get("pipette") if isinstance(plan, dict) else None
    return dict(pip) if isinstance(pip, dict) else {}


def _rig_sample(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The series-model properties (:data:`RIG_PROPERTIES`) in the store's rig
    snapshot: the ``Sample`` device's first, then any device's that has them
    (the simulated film is described by whichever device simulates it)."""
    devices = (((meta or {}).get("rig") or {}).get("devices")) or {}
    if not isinstance(devices, dict):
        return {}
    out: dict[str, Any] = {}
    for _, props in sorted(devices.items(), key=lambda kv: kv[0] != "Sample"):
        if isinstance(props, dict):
            for prop in RIG_PROPERTIES.values():
                if prop in props and prop not in out:
                    out[prop] = props[prop]
    return out


def pipette_from_meta(meta: dict[str, Any] | None) -> dict[str, float]:
    """The pipette's geometry a store records (names of
    :class:`~napari_seccm.model.PipetteGeometry`): from the plan, else from the
    rig snapshot of an older store; the fields found in neither are absent."""
    plan, sample = _plan_pipette(meta), _rig_sample(meta)
    out: dict[str, float] = {}
    for name in PIPETTE_FIELDS:
        v = plan.get(name, sample.get(RIG_PROPERTIES[name]))
        if v is not None:
            try:
                out[name] = float(v)
            except (TypeError, ValueError):
                continue
    return out


# ------------------------------------------------------------------ formulas
def llto_axes(anisotropy: float, orientation: str) -> tuple[float, float, float]:
    """Principal conductivities ``(x, y, z)`` of an LLTO domain relative to the
    fast (ab-plane) one, for ``anisotropy = sigma_fast / sigma_slow``.

    ``"001"``: c axis normal to the film (fast, fast, slow); ``"100"``: c axis
    in the plane (fast, slow, fast).
    """
    if not anisotropy >= 1:
        raise ValueError(f"anisotropy (sigma_fast / sigma_slow) must be >= 1, got {anisotropy}")
    return physics.orientation_conductivities(1.0, 1.0 / anisotropy, orientation)


def domain_spreading_ratio(anisotropy: float) -> float:
    """``G[100] / G[001]`` of the spreading term alone (1.3 / 1.9 / 2.8 / 4.3
    for an anisotropy of 3 / 10 / 30 / 100)."""
    g100 = physics.spreading_conductance(1.0, *llto_axes(anisotropy, "100"))
    g001 = physics.spreading_conductance(1.0, *llto_axes(anisotropy, "001"))
    return float(g100 / g001)


# --------------------------------------------------------------------- model
@dataclass(frozen=True)
class SeriesModel:
    """Pipette, interface and film parameters of the series model.

    ``from_meta`` reads them from a store (the plan's pipette, the rig
    snapshot); any of them can be given instead (a real instrument records no
    film parameters).
    """

    tip_radius_nm: float
    half_angle_deg: float
    electrolyte_S_per_cm: float
    footprint_radius_nm: float
    thickness_nm: float
    sigma_film_S_per_cm: float
    pad_edge_x_um: float
    asr_ohm_cm2: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"series model: {f.name} must be a finite number, got {v!r}")
            if f.name not in ("pad_edge_x_um", "asr_ohm_cm2") and v <= 0:
                raise ValueError(f"series model: {f.name} must be > 0, got {v!r}")
            if f.name == "asr_ohm_cm2" and v < 0:
                raise ValueError(f"series model: asr_ohm_cm2 must be >= 0, got {v!r}")

    # ------------------------------------------------------------ building
    @classmethod
    def sources(cls, meta: dict[str, Any] | None, **overrides: float | None) -> dict[str, str]:
        """Where each parameter comes from: ``"argument"``, ``"plan"`` (the
        plan's pipette), ``"rig snapshot"``, ``"default"`` (ASR 0) or
        ``"missing"``."""
        return cls._gather(meta, overrides)[1]

    @classmethod
    def _gather(
        cls, meta: dict[str, Any] | None, overrides: dict[str, float | None]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        unknown = set(overrides) - set(RIG_PROPERTIES)
        if unknown:
            raise ValueError(f"unknown series-model parameters: {sorted(unknown)}")
        plan, sample = _plan_pipette(meta), _rig_sample(meta)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, prop in RIG_PROPERTIES.items():
            for src, v in (
                ("argument", overrides.get(name)),
                ("plan", plan.get(name) if name in PIPETTE_FIELDS else None),
                ("rig snapshot", sample.get(prop)),
                ("default", 0.0 if name == "asr_ohm_cm2" else None),
            ):
                if v is not None:
                    values[name], sources[name] = v, src
                    break
            else:
                sources[name] = "missing"
        return values, sources

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None, **overrides: float | None) -> SeriesModel:
        """Parameters from the keyword arguments that are not None, else (the
        pipette's) from the plan recorded in the store (``meta["plan"]
        ["pipette"]``), else from the rig snapshot's device properties
        (:data:`RIG_PROPERTIES`). Raises ``ValueError`` naming every parameter
        found nowhere."""
        values, sources = cls._gather(meta, overrides)
        missing = [
            f"{name} ("
            + (f"plan pipette.{name} or " if name in PIPETTE_FIELDS else "")
            + f"rig property {RIG_PROPERTIES[name]})"
            for name, src in sources.items()
            if src == "missing"
        ]
        if missing:
            raise ValueError(
                "the series model needs parameters that the store's plan and rig snapshot "
                "do not hold; give them as arguments: " + ", ".join(missing)
            )
        out: dict[str, float] = {}
        for name, v in values.items():
            try:
                out[name] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"series model: {name} = {v!r} is not a number") from None
        return cls(**out)

    @classmethod
    def available_in(cls, meta: dict[str, Any] | None) -> bool:
        """True if the store holds every parameter (ASR may be absent)."""
        try:
            cls.from_meta(meta)
        except ValueError:
            return False
        return True

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    # --------------------------------------------------------------- terms
    @property
    def footprint_radius_m(self) -> float:
        return self.footprint_radius_nm * 1e-9

    @property
    def pipette_resistance_ohm(self) -> float:
        return physics.pipette_resistance(
            self.tip_radius_nm * 1e-9,
            self.half_angle_deg,
            self.electrolyte_S_per_cm * 100.0,
        )

    @property
    def interface_resistance_ohm(self) -> float:
        return physics.interface_resistance(self.asr_ohm_cm2 * 1e-4, self.footprint_radius_m)

    def film_resistance_ohm(self, x_um: np.ndarray | float) -> np.ndarray:
        """Film (collection) term at stage x, Ohm (distance to the pad edge)."""
        d_m = (np.asarray(x_um, dtype=float) - self.pad_edge_x_um) * 1e-6
        return physics.film_resistance(
            d_m,
            self.footprint_radius_m,
            self.sigma_film_S_per_cm * 100.0,
            self.thickness_nm * 1e-9,
        )

    def spreading_resistance_ohm(
        self, total_resistance_ohm: np.ndarray, x_um: np.ndarray | float
    ) -> np.ndarray:
        """``R_total - R_pipette - R_interface - R_film(x)``, Ohm; NaN where that
        is not positive (the series terms explain all of it: no information)."""
        r = (
            np.asarray(total_resistance_ohm, dtype=float)
            - self.pipette_resistance_ohm
            - self.interface_resistance_ohm
            - self.film_resistance_ohm(x_um)
        )
        with np.errstate(invalid="ignore"):
            return np.where(r > 0, r, np.nan)

    def spreading_conductance_S(
        self, conductance_S: np.ndarray, x_um: np.ndarray | float
    ) -> np.ndarray:
        """Local spreading conductance from the measured conductance, S (NaN
        where the measured one is not positive or the remainder is not)."""
        g = np.asarray(conductance_S, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            total = np.where(g > 0, 1.0 / g, np.nan)
            return 1.0 / self.spreading_resistance_ohm(total, x_um)

    def conductivity_S_per_cm(
        self,
        spreading_conductance_S: np.ndarray,
        *,
        anisotropy: float | None = None,
        orientation: np.ndarray | str | None = None,
    ) -> np.ndarray:
        """Local conductivity from the spreading conductance, S/cm.

        Isotropic (``anisotropy`` None): ``sigma = G / (4 a)``, for an
        anisotropic film the geometric mean ``sqrt(sigma_in sigma_z)``.
        Anisotropic: the fast (ab-plane) conductivity of an LLTO domain of the
        given ``orientation`` (``"001"``/``"100"``, or a label array with
        0 = [100], 1 = [001] and -1 = unknown -> NaN).
        """
        return conductivity_S_per_cm(
            spreading_conductance_S,
            self.footprint_radius_m,
            anisotropy=anisotropy,
            orientation=orientation,
        )


def conductivity_S_per_cm(
    spreading_S: np.ndarray,
    radius_m: float,
    *,
    anisotropy: float | None = None,
    orientation: np.ndarray | str | None = None,
) -> np.ndarray:
    """See :meth:`SeriesModel.conductivity_S_per_cm` (``spreading_S``: the
    spreading conductance, S)."""
    g = np.asarray(spreading_S, dtype=float)
    if anisotropy is None:
        return g / (4.0 * radius_m) / 100.0
    if orientation is None:
        raise ValueError("an anisotropic conductivity needs the domain orientation")
    unit = {
        o: float(physics.spreading_conductance(radius_m, *llto_axes(anisotropy, o)))
        for o in ("100", "001")
    }
    if isinstance(orientation, str):
        return g / unit[orientation] / 100.0
    lab = np.asarray(orientation)
    per = np.where(lab == 0, unit["100"], np.where(lab == 1, unit["001"], np.nan))
    return g / per / 100.0
