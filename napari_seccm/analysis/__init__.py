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
- :mod:`.stripes`: a significance test of periodic contrast over every wave
  vector the grid resolves, stripe period and angle (least squares, with
  uncertainties; autocorrelation cross-check), radial PSD, warnings;
- :mod:`.lines`: thin low-current lines (grain boundaries) told from bands;
- :mod:`.classify`: the [100]/[001] classes (a stripe model with footprint
  blending, or a Gaussian mixture) and their levels, with intervals that
  carry the classification and the systematic terms; the drift;
- :mod:`.domains`: Otsu segmentation, per-domain statistics, ratios with
  bootstrap intervals (of fixed labels), histograms;
- :mod:`.profiles`: line profiles (with a width), grain-boundary contrast
  against the noise, footprint resolution;
- :mod:`.export`: GSF, GWY, TIFF, CSV, PNG;
- :mod:`.report`: the whole analysis of a store (``napari-seccm analyze``) or
  of a map (``analyze_map``), with a ``warnings`` list of stable codes.

Conventions: positions in um in the stage frame; maps indexed ``[row, col]``
with pixel centres ``x0 + (col + 0.5) p``, ``y0 + (row + 0.5) p``; stripe
angles along the stripes, CCW from +x, in [0, 180); domain labels 0 = [100],
1 = [001], -1 = none.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule; imported on first use (PEP 562), so that
#: ``import napari_seccm.analysis.iv`` (the demo) or ``.registration`` (the
#: Align widget) does not load zarr, dask and scipy's optimizers
_LAZY = {
    "QUALITY_NAMES": "maps",
    "SeriesModel": "series",
    "analyze_map": "report",
    "analyze_store": "report",
    "autocorrelation": "stripes",
    "boundary_contrast": "profiles",
    "boundary_lines": "lines",
    "class_levels": "classify",
    "class_ratio": "domains",
    "classify_domains": "classify",
    "conductance_maps": "maps",
    "conductance_ratios": "report",
    "current_map": "maps",
    "domain_statistics": "domains",
    "fit_iv": "iv",
    "footprint_resolution": "profiles",
    "height_map": "maps",
    "histogram": "domains",
    "iv_sample_mask": "iv",
    "line_profile": "profiles",
    "periodic_contrast": "stripes",
    "pixel_centers": "geometry",
    "plane_fit": "geometry",
    "point_conductance": "maps",
    "point_iv_fit": "maps",
    "point_mean_current": "maps",
    "program_samples": "iv",
    "radial_psd": "stripes",
    "reference_level": "classify",
    "remove_plane": "geometry",
    "segment_domains": "domains",
    "spreading_ratio": "classify",
    "stripe_period_angle": "stripes",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
