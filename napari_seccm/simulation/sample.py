"""The simulated sample: an epitaxial LLTO thin film on SrTiO3 with an Au pad.

Conventions (shared by the whole package):

- positions are in um in the stage frame; images are indexed ``[y, x]``;
- a stripe angle is the direction *along* the stripes, counter-clockwise from
  the +x stage axis;
- heights are in um, larger is farther from the sample.

Everything here is vectorized over arrays of positions and deterministic for a
given ``seed``.
"""

from __future__ import annotations

import collections
import functools
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import physics

#: label of a [100]-oriented (c axis in plane) domain in a domain map
DOMAIN_100 = 0
#: label of a [001]-oriented (c axis normal) domain in a domain map
DOMAIN_001 = 1


@dataclass
class FilmParameters:
    """Everything that describes the film; each field name carries its unit."""

    #: seed of the film's own random structure (stripe wander and widths,
    #: roughness, grain network), independent of the noise seed of the rig
    seed: int = 1
    thickness_nm: float = 50.0
    #: ab-plane (fast) conductivity of bulk LLTO
    sigma_fast_S_per_cm: float = 1e-3
    #: ratio fast / slow (c axis); 10 gives G[100]/G[001] ~1.9 (spreading alone)
    anisotropy: float = 10.0
    #: in-plane conductivity used for the film (collection) term
    sigma_film_S_per_cm: float = 1e-3
    # [001] stripes in a [100] matrix
    stripe_period_um: float = 2.0
    stripe_fraction_001: float = 0.35
    stripe_angle_deg: float = 60.0
    stripe_offset_um: float = 0.0
    stripe_jitter_um: float = 0.05
    #: domains of several widths: sigma of ln(width) of each period and of
    #: each [001] stripe in it (log-normal, mean kept at the nominal values);
    #: 0 = the regular stripes of the report's film
    stripe_width_scatter: float = 0.0
    #: optional label image (DOMAIN_100 / DOMAIN_001), replaces the stripes
    domain_map_file: str = ""
    domain_map_pixel_um: float = 0.05
    domain_map_origin_x_um: float = 0.0
    domain_map_origin_y_um: float = 0.0
    # grain boundaries: a Voronoi network of lines; 0 = single grain
    grain_size_um: float = 0.0
    gb_width_nm: float = 5.0
    #: sigma_GB / sigma_bulk (1e-4 .. 1e-5 in ceramics; 1 = no contrast)
    gb_conductivity_factor: float = 1e-2
    #: fraction of the grains that are [001]-oriented as a whole (the rest keep
    #: the stripe domains, or are [100] when there are no stripes): with
    #: ``stripe_period_um`` 0 a film of grains only, each [100] or [001]
    grain_fraction_001: float = 0.0
    # the Au back contact: covers x < pad_edge_x_um
    pad_edge_x_um: float = -20.0
    #: blocking Au/LLTO contact: its capacitance and leak resistance
    pad_capacitance_F: float = 2.5e-6
    pad_leak_ohm: float = 1e6
    # interface and double layer
    asr_ohm_cm2: float = 0.0
    cdl_uF_per_cm2: float = 10.0
    rest_potential_V: float = 0.0
    # electronic leakage below an onset potential (off by default)
    leakage_enabled: bool = False
    leakage_onset_V: float = 1.7
    leakage_resistance_ohm: float = 1e10
    # topography
    #: mean height of the surface in the Z stage frame
    height_offset_um: float = 20.0
    tilt_x_um_per_um: float = 0.005
    tilt_y_um_per_um: float = -0.003
    roughness_nm: float = 1.0
    roughness_length_um: float = 1.0
    step_height_nm: float = 0.0
    step_spacing_um: float = 5.0
    step_angle_deg: float = 20.0


def _random_field(
    rng: np.random.Generator, n_modes: int, length_um: float, dims: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random Fourier modes of a smooth field with correlation length ~length."""
    k = rng.normal(0.0, 1.0 / max(length_um, 1e-9), size=(n_modes, dims))
    phase = rng.uniform(0.0, 2 * np.pi, size=n_modes)
    amp = np.full(n_modes, math.sqrt(2.0 / n_modes))  # unit rms
    return k, phase, amp


def _eval_field(
    modes: tuple[np.ndarray, np.ndarray, np.ndarray], *coords: np.ndarray
) -> np.ndarray:
    """Sum of the random modes at the points ``coords`` (any broadcastable shape)."""
    k, phase, amp = modes
    c = np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in coords)), axis=-1)
    flat = c.reshape(-1, c.shape[-1])  # one 2-D matmul, not one per element
    return (np.cos(flat @ k.T + phase) @ amp).reshape(c.shape[:-1])


@dataclass
class LLTOFilm:
    """A film built from :class:`FilmParameters`; query it at arrays of points."""

    params: FilmParameters = field(default_factory=FilmParameters)
    #: explicit Voronoi seeds of the grain network (um, shape (n, 2)), replacing
    #: the random ones (tests that need a boundary at a known place)
    grain_seeds: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        p = self.params
        rng = np.random.default_rng(p.seed)
        self._jitter = _random_field(rng, 24, max(p.stripe_period_um, 0.1), 1)
        self._rough = _random_field(rng, 64, p.roughness_length_um, 2)
        self._label_image: np.ndarray | None = None
        if p.domain_map_file:
            self._label_image = _load_label_image(p.domain_map_file)
        self._grain_seeds: np.ndarray | None = None
        if self.grain_seeds is not None:
            self._grain_seeds = np.asarray(self.grain_seeds, dtype=float).reshape(-1, 2)
        elif p.grain_size_um > 0:
            # seeds of a Voronoi tessellation over a generous area around 0
            half = 200.0
            n = int((2 * half / p.grain_size_um) ** 2)
            n = min(max(n, 4), 200_000)
            self._grain_seeds = rng.uniform(-half, half, size=(n, 2))
        if self._grain_seeds is not None:
            from scipy.spatial import cKDTree

            self._grain_tree = cKDTree(self._grain_seeds)
            # separate streams: adding a feature does not move the grains
            grng = np.random.default_rng([p.seed, 3])
            self._grain_001 = grng.random(len(self._grain_seeds)) < p.grain_fraction_001
        #: GB crossings along film rows towards the pad, cached per row
        self._row_cache: collections.OrderedDict[int, tuple[Any, ...]] = collections.OrderedDict()
        self._stripe_table: tuple[np.ndarray, np.ndarray] | None = None
        if p.stripe_width_scatter > 0 and p.stripe_period_um > 0:
            self._stripe_table = _stripe_table(p, np.random.default_rng([p.seed, 2]))

    # ------------------------------------------------------------------ domains
    def domain_label(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """DOMAIN_001 where the film is [001]-oriented, DOMAIN_100 elsewhere."""
        p = self.params
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if self._label_image is not None:
            img = self._label_image
            col = np.floor((x - p.domain_map_origin_x_um) / p.domain_map_pixel_um)
            row = np.floor((y - p.domain_map_origin_y_um) / p.domain_map_pixel_um)
            inside = (row >= 0) & (row < img.shape[0]) & (col >= 0) & (col < img.shape[1])
            out = np.full(np.broadcast(x, y).shape, DOMAIN_100, dtype=np.uint8)
            r = np.clip(row, 0, img.shape[0] - 1).astype(int)
            c = np.clip(col, 0, img.shape[1] - 1).astype(int)
            out[inside] = img[r[inside], c[inside]]
            return out
        if p.stripe_period_um <= 0 or p.stripe_fraction_001 <= 0:
            labels = np.zeros(np.broadcast(x, y).shape, dtype=np.uint8)
        else:
            th = math.radians(p.stripe_angle_deg)
            along = x * math.cos(th) + y * math.sin(th)
            across = -x * math.sin(th) + y * math.cos(th)
            if p.stripe_jitter_um > 0:
                across = across + p.stripe_jitter_um * _eval_field(self._jitter, along)
            if self._stripe_table is not None:
                starts, widths = self._stripe_table
                u = np.asarray(across - p.stripe_offset_um, dtype=float)
                k = np.clip(np.searchsorted(starts, u, side="right") - 1, 0, starts.size - 1)
                labels = ((u - starts[k]) < widths[k]).astype(np.uint8)
            else:
                phase = np.mod((across - p.stripe_offset_um) / p.stripe_period_um, 1.0)
                labels = (phase < p.stripe_fraction_001).astype(np.uint8)
        if self._grain_seeds is not None and p.grain_fraction_001 > 0:
            pts = np.stack(np.broadcast_arrays(x, y), axis=-1).reshape(-1, 2)
            _, idx = self._grain_tree.query(pts)
            whole = self._grain_001[idx].reshape(labels.shape)
            labels = np.where(whole, np.uint8(DOMAIN_001), labels).astype(np.uint8)
        return labels

    def grain_boundary_mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True within half a GB width of a grain boundary."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        shape = np.broadcast(x, y).shape
        if self._grain_seeds is None:
            return np.zeros(shape, dtype=bool)
        pts = np.stack(np.broadcast_arrays(x, y), axis=-1).reshape(-1, 2)
        # distance to the bisector of the two nearest seeds (the Voronoi edge):
        # (d2^2 - d1^2) / (2 |s2 - s1|)
        d, idx = self._grain_tree.query(pts, k=2)
        s1 = self._grain_seeds[idx[:, 0]]
        s2 = self._grain_seeds[idx[:, 1]]
        sep = np.linalg.norm(s2 - s1, axis=1)
        dist = (d[:, 1] ** 2 - d[:, 0] ** 2) / (2.0 * sep)
        half_w = self.params.gb_width_nm * 1e-3 / 2.0
        return (dist <= half_w).reshape(shape)

    # ------------------------------------------------------------ conductances
    def conductivities(self) -> dict[int, tuple[float, float, float]]:
        """Principal conductivities (x, y, z) in S/m for each domain label."""
        p = self.params
        fast = p.sigma_fast_S_per_cm * 100.0
        slow = fast / p.anisotropy
        return {
            DOMAIN_100: physics.orientation_conductivities(fast, slow, "100"),
            DOMAIN_001: physics.orientation_conductivities(fast, slow, "001"),
        }

    def spreading_conductance(
        self, x: np.ndarray, y: np.ndarray, radius_um: float, n_ring: int = 6
    ) -> np.ndarray:
        """Spreading conductance (S) of a disk contact centred at each (x, y).

        The footprint is sampled on a polar grid of ``n_ring`` rings; each
        sample contributes the conductance of the domain (and grain boundary)
        under it, weighted by its area, so a footprint that straddles a domain
        edge or a grain boundary gives the area-weighted blend (conductances
        of the parts in parallel).
        """
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        ox, oy, w = _disk_samples(1.0, n_ring)  # scaled: every footprint hits the cache
        xs = x[..., None] + radius_um * ox
        ys = y[..., None] + radius_um * oy
        labels = self.domain_label(xs, ys)
        a = radius_um * 1e-6
        g = np.empty(labels.shape, dtype=float)
        for lab, (sx, sy, sz) in self.conductivities().items():
            g[labels == lab] = float(physics.spreading_conductance(a, sx, sy, sz))
        if self._grain_seeds is not None:
            gb = self.grain_boundary_mask(xs, ys)
            g = np.where(gb, g * self.params.gb_conductivity_factor, g)
        return g @ w

    # ------------------------------------------------- grain-boundary geometry
    def gb_distance_um(self, x: float, y: float) -> float:
        """Distance from (x, y) to the nearest grain boundary, um (inf: none)."""
        if self._grain_seeds is None or len(self._grain_seeds) < 2:
            return math.inf
        d, idx = self._grain_tree.query((x, y), k=2)
        s1, s2 = self._grain_seeds[idx[0]], self._grain_seeds[idx[1]]
        return float((d[1] ** 2 - d[0] ** 2) / (2.0 * np.hypot(*(s2 - s1))))

    def gb_specific_length_um(self) -> float:
        """How much film a grain boundary is worth in series, um:
        ``w (1 / f - 1)`` for a boundary of width w and conductivity factor f
        (its resistance beyond the bulk film it replaces)."""
        p = self.params
        return p.gb_width_nm * 1e-3 * (1.0 / p.gb_conductivity_factor - 1.0)

    def _row_crossings(self, y: float, x_end: float) -> np.ndarray:
        """x of the grain boundaries crossing the row ``y`` between the pad edge
        and at least ``x_end``, sorted.

        Which pairs of grains meet along the row is found once per 2 nm band of
        rows (a raster map's row, drifting slowly, stays in its band) by
        labelling the row densely; where each pair's boundary crosses is then
        exact at ``y`` itself.
        """
        p = self.params
        key = round(y / 0.002)
        hit = self._row_cache.get(key)
        if hit is not None and hit[0] >= x_end:
            self._row_cache.move_to_end(key)
            _, s1, s2, lo, hi = hit
        else:
            seeds = self._grain_seeds
            assert seeds is not None
            x0 = p.pad_edge_x_um
            x1 = max(x_end, x0) + 20.0
            spacing = p.grain_size_um if p.grain_size_um > 0 else 1.0
            step = min(spacing / 40.0, 0.05)
            xs = np.arange(x0, x1 + step, step)
            _, idx = self._grain_tree.query(np.column_stack((xs, np.full(xs.size, key * 0.002))))
            change = np.flatnonzero(idx[1:] != idx[:-1])
            s1, s2 = seeds[idx[change]], seeds[idx[change + 1]]
            # a crossing stays within a sample step (plus the band's tilt) of
            # where the labels changed
            lo, hi = xs[change] - step, xs[change + 1] + step
            self._row_cache[key] = (x1, s1, s2, lo, hi)
            if len(self._row_cache) > 512:
                self._row_cache.popitem(last=False)
        # the bisector of the two seeds meets the row y at
        # x = (|s2|^2 - |s1|^2 - 2 y (s2y - s1y)) / (2 (s2x - s1x))
        dx = s2[:, 0] - s1[:, 0]
        num = (s2**2).sum(1) - (s1**2).sum(1) - 2 * y * (s2[:, 1] - s1[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = np.where(np.abs(dx) > 1e-12, num / (2 * dx), (lo + hi) / 2)
        return np.clip(xc, lo, hi)

    def gb_film_resistance(self, x: float, y: float, footprint_m: float) -> float:
        """Extra resistance of the film (collection) term from grain boundaries
        between the contact and the Au pad, Ohm.

        The ions travel laterally through the thin film to the pad, spreading
        radially from the contact (the ``ln(L / a) / (2 pi sigma t)`` term is
        the integral of ``dr / (2 pi r sigma t)``). A thin resistive boundary
        crossing that path at distance r cuts the whole current tube there
        (circumference ``2 pi r``): it adds ``lambda / (2 pi r sigma t)``, with
        lambda its equivalent film length (:meth:`gb_specific_length_um`). Only
        boundaries that lie between the contact and the pad (crossing the
        straight path to the pad edge) count; r is at least the footprint
        radius. Far boundaries on the path add a little (effective-medium limit:
        every boundary crossed adds its share), near ones a lot.
        """
        p = self.params
        if self._grain_seeds is None or x <= p.pad_edge_x_um:
            return 0.0
        lam = self.gb_specific_length_um() * 1e-6
        if lam <= 0:
            return 0.0
        xc = self._row_crossings(y, x)
        xc = xc[xc < x]
        if xc.size == 0:
            return 0.0
        r = np.maximum((x - xc) * 1e-6, footprint_m)
        sheet = p.sigma_film_S_per_cm * 100.0 * p.thickness_nm * 1e-9
        return float(lam / (2 * np.pi * sheet) * np.sum(1.0 / r))

    def gb_spreading_factor(self, x: float, y: float, radius_um: float) -> float:
        """Factor (>= 1) on the spreading resistance from a grain boundary that
        crosses the spreading volume under the contact.

        A boundary plane at distance d from the contact centre reflects part of
        the spreading current (an image source at 2d): it adds
        ``kappa / (4 pi sigma d)`` to the Holm ``1 / (4 sigma a)``, i.e. the
        spreading resistance times ``kappa a / (pi d)``, with
        ``kappa = lambda / (lambda + d)`` (lambda: the boundary's equivalent
        film length; 1 = blocking). It vanishes when the boundary passes through
        the contact centre (by symmetry no current crosses it there; the entry
        through the boundary's own material is the area blend of
        :meth:`spreading_conductance`) and beyond three footprint radii (out of
        the spreading volume: there only the film term sees it).
        """
        d = self.gb_distance_um(x, y)
        a = radius_um
        if not d < 3 * a:
            return 1.0
        lam = self.gb_specific_length_um()
        kappa = lam / (lam + d) if lam > 0 else 0.0
        shape = min(d / a, 1.0) * (1.0 - d / (3 * a))
        return 1.0 + kappa * shape * a / (math.pi * max(d, a))

    def pad_distance_um(self, x: np.ndarray) -> np.ndarray:
        """Distance from the contact to the edge of the Au pad, um."""
        return np.asarray(x, dtype=float) - self.params.pad_edge_x_um

    def on_pad(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) <= self.params.pad_edge_x_um

    # --------------------------------------------------------------- topography
    def surface_height_um(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the film surface, um (tilt + roughness + substrate steps)."""
        p = self.params
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        h = p.height_offset_um + p.tilt_x_um_per_um * x + p.tilt_y_um_per_um * y
        if p.roughness_nm > 0:
            h = h + p.roughness_nm * 1e-3 * _eval_field(self._rough, x, y)
        if p.step_height_nm != 0 and p.step_spacing_um > 0:
            th = math.radians(p.step_angle_deg)
            across = -x * math.sin(th) + y * math.cos(th)
            h = h + p.step_height_nm * 1e-3 * np.floor(across / p.step_spacing_um)
        return h


def _stripe_table(p: FilmParameters, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Starts (across the stripes, um) of periods of log-normal length, and the
    [001] width in each (log-normal too, means at the nominal values)."""
    s = p.stripe_width_scatter
    half = 600.0
    n = int(min(2 * half / p.stripe_period_um + 10, 2_000_000))
    periods = p.stripe_period_um * np.exp(s * rng.standard_normal(n) - s**2 / 2)
    widths = p.stripe_fraction_001 * periods * np.exp(s * rng.standard_normal(n) - s**2 / 2)
    widths = np.minimum(widths, periods)
    starts = np.concatenate(([0.0], np.cumsum(periods[:-1])))
    # period 0 starts at 0 (as the regular stripes); half of them lie below 0
    k0 = n // 2
    starts = starts - starts[k0]
    return starts, widths


@functools.lru_cache(maxsize=64)
def _disk_samples(radius_um: float, n_ring: int) -> tuple[np.ndarray, ...]:
    """Offsets (x, y) and area weights of a polar sampling of a disk."""
    xs, ys, ws = [0.0], [0.0], [1.0]
    for i in range(1, n_ring + 1):
        r = radius_um * i / n_ring
        n = 6 * i
        ang = np.arange(n) * 2 * np.pi / n + (i % 2) * np.pi / n
        xs.extend(r * np.cos(ang))
        ys.extend(r * np.sin(ang))
        ws.extend([6.0 * i / n] * n)  # each ring carries area ~ i
    w = np.asarray(ws)
    return np.asarray(xs), np.asarray(ys), w / w.sum()


def _load_label_image(path: str) -> np.ndarray:
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"domain map file not found: {p}")
    if p.suffix == ".npy":
        img = np.load(p, allow_pickle=False)
    else:
        import tifffile

        img = tifffile.imread(p)
    if img.ndim != 2:
        raise ValueError(f"domain map must be a 2-D label image, got shape {img.shape}")
    return (np.asarray(img) > 0).astype(np.uint8)


def film_parameter_names() -> list[str]:
    return [f.name for f in fields(FilmParameters)]
