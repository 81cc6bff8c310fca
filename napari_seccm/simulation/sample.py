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

import functools
import math
from dataclasses import dataclass, field, fields

import numpy as np

from . import physics

#: label of a [100]-oriented (c axis in plane) domain in a domain map
DOMAIN_100 = 0
#: label of a [001]-oriented (c axis normal) domain in a domain map
DOMAIN_001 = 1


@dataclass
class FilmParameters:
    """Everything that describes the film; each field name carries its unit."""

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

    def __post_init__(self) -> None:
        p = self.params
        rng = np.random.default_rng(p.seed)
        self._jitter = _random_field(rng, 24, max(p.stripe_period_um, 0.1), 1)
        self._rough = _random_field(rng, 64, p.roughness_length_um, 2)
        self._label_image: np.ndarray | None = None
        if p.domain_map_file:
            self._label_image = _load_label_image(p.domain_map_file)
        self._grain_seeds: np.ndarray | None = None
        if p.grain_size_um > 0:
            # seeds of a Voronoi tessellation over a generous area around 0
            half = 200.0
            n = int((2 * half / p.grain_size_um) ** 2)
            n = min(max(n, 4), 200_000)
            self._grain_seeds = rng.uniform(-half, half, size=(n, 2))
            from scipy.spatial import cKDTree

            self._grain_tree = cKDTree(self._grain_seeds)

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
            return np.zeros(np.broadcast(x, y).shape, dtype=np.uint8)
        th = math.radians(p.stripe_angle_deg)
        along = x * math.cos(th) + y * math.sin(th)
        across = -x * math.sin(th) + y * math.cos(th)
        if p.stripe_jitter_um > 0:
            across = across + p.stripe_jitter_um * _eval_field(self._jitter, along)
        phase = np.mod((across - p.stripe_offset_um) / p.stripe_period_um, 1.0)
        return (phase < p.stripe_fraction_001).astype(np.uint8)

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
        ox, oy, w = _disk_samples(radius_um, n_ring)
        xs = x[..., None] + ox
        ys = y[..., None] + oy
        labels = self.domain_label(xs, ys)
        a = radius_um * 1e-6
        g = np.empty(labels.shape, dtype=float)
        for lab, (sx, sy, sz) in self.conductivities().items():
            g[labels == lab] = float(physics.spreading_conductance(a, sx, sy, sz))
        if self._grain_seeds is not None:
            gb = self.grain_boundary_mask(xs, ys)
            g = np.where(gb, g * self.params.gb_conductivity_factor, g)
        return g @ w

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
