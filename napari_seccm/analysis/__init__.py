"""Analysis of SECCM scan stores (numpy, scipy, dask; no Qt, no Micro-Manager,
no napari: it runs headless, in scripts and on dask clusters).

Modules, each a set of plain functions returning dicts of arrays whose keys
carry their units:

- :mod:`.iv`: vectorized linear I-V fits (``fit_iv``) and which samples of a
  plan's program go into them;
- :mod:`.maps`: maps from a store, chunk by chunk with dask: current in a time
  window or at a potential, conductance (fits or CA) with a quality mask
  (NaN, never 0), contact-height topography with plane removal;
- :mod:`.series`: the series model (pipette, interface, spreading, film)
  inverted to local spreading conductance and conductivity;
- :mod:`.stripes`: stripe period and angle (2D FFT + least squares, with
  uncertainties; autocorrelation cross-check), radial PSD;
- :mod:`.domains`: two-class segmentation, per-domain statistics, ratios with
  bootstrap intervals, histograms;
- :mod:`.profiles`: line profiles (with a width), grain-boundary contrast
  against the noise, footprint resolution;
- :mod:`.export`: GSF, GWY, TIFF, CSV, PNG;
- :mod:`.report`: the whole analysis of a store (``napari-seccm analyze``).

Conventions: positions in um in the stage frame; maps indexed ``[row, col]``
with pixel centres ``x0 + (col + 0.5) p``, ``y0 + (row + 0.5) p``; stripe
angles along the stripes, CCW from +x, in [0, 180); domain labels 0 = [100],
1 = [001], -1 = none.
"""

from __future__ import annotations

from .domains import class_ratio, domain_statistics, histogram, segment_domains
from .geometry import pixel_centers, plane_fit, remove_plane
from .iv import fit_iv, iv_sample_mask, program_samples
from .maps import (
    QUALITY_NAMES,
    conductance_maps,
    current_map,
    height_map,
    point_conductance,
    point_iv_fit,
    point_mean_current,
)
from .profiles import boundary_contrast, footprint_resolution, line_profile
from .report import analyze_store, conductance_ratios
from .series import SeriesModel
from .stripes import autocorrelation, radial_psd, stripe_period_angle

__all__ = [
    "QUALITY_NAMES",
    "SeriesModel",
    "analyze_store",
    "autocorrelation",
    "boundary_contrast",
    "class_ratio",
    "conductance_maps",
    "conductance_ratios",
    "current_map",
    "domain_statistics",
    "fit_iv",
    "footprint_resolution",
    "height_map",
    "histogram",
    "iv_sample_mask",
    "line_profile",
    "pixel_centers",
    "plane_fit",
    "point_conductance",
    "point_iv_fit",
    "point_mean_current",
    "program_samples",
    "radial_psd",
    "remove_plane",
    "segment_domains",
    "stripe_period_angle",
]
