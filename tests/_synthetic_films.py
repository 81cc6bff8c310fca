"""Synthetic SECCM conductance maps with a known truth, in plain numpy.

Independent of the simulator (which other work changes): the physics is written
out here from the formulas of ``DOMAIN.md``, so the analysis is tested against
numbers it did not compute itself.

A map is what a hopping scan of an LLTO film measures at each landing:

- domains: parallel [001] stripes (period, angle along the stripes CCW from +x,
  [001] fraction, phase, optional wander) in a [100] matrix, or none;
- the footprint: each landing is a disk of radius ``a``; the spreading
  conductances of the domains under it add by area (sampled on a polar grid);
- grain boundaries: a Voronoi network of lines of a given width whose
  conductance is ``gb_factor`` of the film's;
- series terms: ``G = 1 / (R_pipette + 1 / g_spreading + R_film(x))`` with the
  film (collection) term ``ln(L / a) / (2 pi sigma t)`` at distance ``L`` from
  the Au pad edge (``x < pad_edge_x_um``);
- a slow multiplicative drift along the acquisition order (serpentine rows:
  the back contact charging up) and multiplicative pixel scatter.

Spreading conductances (Holm, anisotropic): ``g001 = 4 a sigma_fast /
sqrt(A)``; ``g100 / g001 = AGM(1, sqrt(A))`` (the disk on a half-space with an
in-plane slow axis), ``A = sigma_fast / sigma_slow``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


def agm(a: float, b: float) -> float:
    while abs(a - b) > 1e-15 * abs(a):
        a, b = (a + b) / 2, math.sqrt(a * b)
    return a


@dataclass(frozen=True)
class Film:
    # grid
    n: int = 40
    pitch_um: float = 0.3
    # domains (period 0: none)
    period_um: float = 2.4
    angle_deg: float = 125.0
    fraction_001: float = 0.35
    phase_um: float = 0.0
    wander_um: float = 0.0
    anisotropy: float = 10.0
    # landing
    footprint_radius_um: float = 0.1
    # series terms
    tip_radius_nm: float = 50.0
    half_angle_deg: float = 5.0
    electrolyte_S_per_cm: float = 1e-2
    sigma_fast_S_per_cm: float = 1e-3
    sigma_film_S_per_cm: float = 1e-3
    thickness_nm: float = 50.0
    pad_edge_x_um: float = -20.0
    # grain boundaries (grain size 0: none)
    grain_size_um: float = 0.0
    gb_width_um: float = 0.2
    gb_factor: float = 0.05
    #: fraction of the grains that are [001] as a whole (domains without
    #: stripes: with period 0, a film of grains each [100] or [001])
    grain_fraction_001: float = 0.0
    # scan
    noise: float = 0.0  # relative pixel scatter (1 sigma)
    drift: float = 0.0  # relative change of the conductance over the map
    order: str = "serpentine"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def but(self, **kw: Any) -> Film:
        return replace(self, **kw)

    # -------------------------------------------------------------- geometry
    @property
    def x0_um(self) -> float:
        return -self.n * self.pitch_um / 2

    @property
    def y0_um(self) -> float:
        return -self.n * self.pitch_um / 2

    @property
    def geo(self) -> dict[str, float]:
        return {"x0_um": self.x0_um, "y0_um": self.y0_um, "pitch_um": self.pitch_um}

    def centers(self) -> tuple[np.ndarray, np.ndarray]:
        k = (np.arange(self.n) + 0.5) * self.pitch_um
        x = self.x0_um + k
        y = self.y0_um + k
        return np.broadcast_to(x[None, :], (self.n, self.n)), np.broadcast_to(
            y[:, None], (self.n, self.n)
        )

    def order_index(self) -> np.ndarray:
        """Visiting order of each pixel (0 first), the engine's serpentine rows."""
        idx = np.arange(self.n * self.n).reshape(self.n, self.n)
        if self.order == "serpentine":
            idx[1::2] = idx[1::2, ::-1]
        return idx

    # --------------------------------------------------------------- physics
    def g_spreading(self) -> tuple[float, float]:
        a = self.footprint_radius_um * 1e-6
        fast = self.sigma_fast_S_per_cm * 100
        g001 = 4 * a * fast / math.sqrt(self.anisotropy)
        return g001 * agm(1.0, math.sqrt(self.anisotropy)), g001

    def r_pipette(self) -> float:
        kappa = self.electrolyte_S_per_cm * 100
        return 1.0 / (
            kappa
            * math.pi
            * self.tip_radius_nm
            * 1e-9
            * math.tan(math.radians(self.half_angle_deg))
        )

    def r_film(self, x_um: np.ndarray) -> np.ndarray:
        a = self.footprint_radius_um * 1e-6
        L = np.maximum((np.asarray(x_um) - self.pad_edge_x_um) * 1e-6, a)
        return np.log(L / a) / (
            2 * math.pi * self.sigma_film_S_per_cm * 100 * self.thickness_nm * 1e-9
        )

    def _seeds(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 11])
        half = self.n * self.pitch_um / 2 + 3 * self.grain_size_um
        m = max(int((2 * half / self.grain_size_um) ** 2), 4)
        return rng.uniform(-half, half, (m, 2))

    def label(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """1 where [001], 0 where [100]."""
        if self.grain_size_um > 0 and self.grain_fraction_001 > 0:
            from scipy.spatial import cKDTree

            seeds = self._seeds()
            whole = (
                np.random.default_rng([self.seed, 13]).random(len(seeds)) < self.grain_fraction_001
            )
            pts = np.stack(np.broadcast_arrays(x, y), -1).reshape(-1, 2)
            _, idx = cKDTree(seeds).query(pts)
            g001 = whole[idx].reshape(np.broadcast(x, y).shape)
            return np.where(g001, 1, self._stripes(x, y)).astype(np.int8)
        return self._stripes(x, y)

    def _stripes(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.period_um <= 0 or self.fraction_001 <= 0:
            return np.zeros(np.broadcast(x, y).shape, dtype=np.int8)
        th = math.radians(self.angle_deg)
        along = x * math.cos(th) + y * math.sin(th)
        across = -x * math.sin(th) + y * math.cos(th)
        if self.wander_um > 0:
            rng = np.random.default_rng([self.seed, 7])
            k = rng.normal(0, 1 / max(self.period_um, 0.1), 12)
            ph = rng.uniform(0, 2 * np.pi, 12)
            across = across + self.wander_um * math.sqrt(2 / 12) * np.cos(
                along[..., None] * k + ph
            ).sum(-1)
        return (np.mod((across - self.phase_um) / self.period_um, 1.0) < self.fraction_001).astype(
            np.int8
        )

    def _gb_mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.grain_size_um <= 0:
            return np.zeros(np.broadcast(x, y).shape, dtype=bool)
        from scipy.spatial import cKDTree

        seeds = self._seeds()
        pts = np.stack(np.broadcast_arrays(x, y), -1).reshape(-1, 2)
        d, idx = cKDTree(seeds).query(pts, k=2)
        sep = np.linalg.norm(seeds[idx[:, 1]] - seeds[idx[:, 0]], axis=1)
        dist = (d[:, 1] ** 2 - d[:, 0] ** 2) / (2 * sep)
        return (dist <= self.gb_width_um / 2).reshape(np.broadcast(x, y).shape)

    def _disk(self, n_ring: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Polar samples of the footprint disk with their area weights."""
        a = self.footprint_radius_um
        dr = a / n_ring
        ox, oy, w = [0.0], [0.0], [math.pi * (dr / 2) ** 2]
        for i in range(1, n_ring + 1):
            r = i * dr
            m = 6 * i
            t = 2 * np.pi * (np.arange(m) + 0.5 * (i % 2)) / m
            ox += list(r * np.cos(t))
            oy += list(r * np.sin(t))
            ring = 2 * math.pi * r * dr * (0.5 if i == n_ring else 1.0)
            w += [ring / m] * m
        w = np.asarray(w)
        return np.asarray(ox), np.asarray(oy), w / w.sum()

    def spreading_map(self) -> np.ndarray:
        """Spreading conductance of each landing, S (footprint-averaged)."""
        x, y = self.centers()
        ox, oy, w = self._disk()
        xs, ys = x[..., None] + ox, y[..., None] + oy
        g100, g001 = self.g_spreading()
        g = np.where(self.label(xs, ys) == 1, g001, g100)
        if self.grain_size_um > 0:
            g = np.where(self._gb_mask(xs, ys), g * self.gb_factor, g)
        return g @ w

    def conductance_map(self, *, drift: bool = True, noise: bool = True) -> np.ndarray:
        x, _ = self.centers()
        g = 1.0 / (self.r_pipette() + 1.0 / self.spreading_map() + self.r_film(x))
        if drift and self.drift:
            t = self.order_index() / (self.n * self.n - 1)
            g = g * (1 + self.drift * (1 - np.exp(-3 * t)) / (1 - math.exp(-3)))
        if noise and self.noise:
            g = g * (1 + self.noise * np.random.default_rng(self.seed).standard_normal(g.shape))
        return g

    # ----------------------------------------------------------------- truth
    def truth(self) -> dict[str, Any]:
        x, y = self.centers()
        g100, g001 = self.g_spreading()
        xc = 0.0
        base = self.r_pipette() + float(self.r_film(xc))
        lab = self.label(x, y)
        return {
            "period_um": self.period_um if self.period_um > 0 else None,
            "angle_deg": self.angle_deg % 180.0,
            # the [001] area fraction (of the stripes; of the pixels without them)
            "fraction_001": (
                self.fraction_001
                if self.period_um > 0 and not self.grain_fraction_001
                else float(lab.mean())
            ),
            "pixel_fraction_001": float(lab.mean()),
            "conductance_ratio": (base + 1 / g001) / (base + 1 / g100),
            "spreading_conductance_ratio": g100 / g001,
            "labels": lab,
        }

    def series(self) -> dict[str, float]:
        """The series-model parameters (names of analysis.series.SeriesModel)."""
        return {
            "tip_radius_nm": self.tip_radius_nm,
            "half_angle_deg": self.half_angle_deg,
            "electrolyte_S_per_cm": self.electrolyte_S_per_cm,
            "footprint_radius_nm": self.footprint_radius_um * 1e3,
            "thickness_nm": self.thickness_nm,
            "sigma_film_S_per_cm": self.sigma_film_S_per_cm,
            "pad_edge_x_um": self.pad_edge_x_um,
            "asr_ohm_cm2": 0.0,
        }


def angle_diff(a: float, b: float) -> float:
    d = (a - b) % 180.0
    return min(d, 180.0 - d)
