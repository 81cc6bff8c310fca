"""The whole analysis of one scan store, as ``napari-seccm analyze`` prints it.

:func:`analyze_store` reads the conductance map with its quality mask
(:mod:`.maps`) and runs :func:`analyze_map` on it: the stripes with a
significance test (:mod:`.stripes`; thin grain-boundary lines left out,
:mod:`.lines`), the [100]/[001] classes and their levels with intervals that
carry the classification and the systematic terms (:mod:`.classify`), the
drift along the acquisition order, and the spreading ratio and conductivities
from the levels through the series model (:mod:`.series`); then the
contact-height topography and the footprint's resolution (:mod:`.profiles`).
It returns a JSON-ready dict (NaN -> None) with a ``warnings`` list of
``{code, message}`` and, if asked, the maps as arrays.

Warning codes (stable; see the README): ``no_periodic_contrast``,
``possible_aliasing``, ``ambiguous_period``, ``footprint_exceeds_feature``,
``classification_uncertain``, ``boundary_lines``, ``slow_drift``,
``too_few_pixels``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._blas import single_blas_thread
from .classify import (
    Z95,
    classify_domains,
    ratio_from_step,
    reference_level,
    safe_exp,
    spreading_ratio,
)
from .domains import (
    class_ratio,
    domain_statistics,
)
from .geometry import pixel_centers
from .maps import conductance_maps, height_map, open_store, quality_counts
from .profiles import footprint_resolution
from .series import RIG_PROPERTIES, SeriesModel, pipette_from_meta
from .stripes import stripe_period_angle

#: fewest valid pixels for the map analysis (stripes, domains, ratios)
MIN_MAP_PIXELS = 16
#: boundary lines are a warning from this fraction of the pixels on (fewer are
#: a few clumps of noise; they are left out all the same)
MIN_LINE_FRACTION = 0.01
#: the drift is a warning when it exceeds this fraction of the classes' log step
DRIFT_WARNING = 0.5


def conductance_ratios(
    conductance_S: np.ndarray,
    labels: np.ndarray,
    *,
    flattened_S: np.ndarray | None = None,
    x_um: np.ndarray | None = None,
    model: SeriesModel | None = None,
    statistic: str = "median",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The [100]/[001] conductance ratios of a segmented map.

    - ``conductance_ratio``: the measured one, the ratio of the classes'
      conductances (``statistic``, default median) in ``flattened_S`` (the
      map with its tilt removed, level kept: :func:`segment_domains`), else
      in ``conductance_S``. For a CA map this is the ratio of the currents.
      It includes the series terms (pipette, film, interface) that are the
      same over both domains, so it is smaller than the spreading ratio.
    - ``spreading_conductance_ratio`` (with a ``model``): the ratio of the
      local spreading conductances ``1 / (1/G - R_pipette - R_interface -
      R_film(x))``, each pixel with its own film term at its ``x_um``.

    Each with a 95 % bootstrap interval (``*_ci95``) and the two class values.
    """
    flat = conductance_S if flattened_S is None else flattened_S
    m = class_ratio(flat, labels, statistic=statistic, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {
        "conductance_ratio": m["ratio"],
        "conductance_ratio_ci95": m["ci"],
        "conductance_100_S": m["value_100"],
        "conductance_001_S": m["value_001"],
        "n_100": m["n_100"],
        "n_001": m["n_001"],
        "ratio_statistic": statistic,
        "spreading_conductance_ratio": None,
        "spreading_conductance_ratio_ci95": None,
        "spreading_conductance_100_S": None,
        "spreading_conductance_001_S": None,
    }
    if model is not None:
        if x_um is None:
            raise ValueError("the spreading ratio needs each pixel's x position (x_um)")
        gsp = model.spreading_conductance_S(conductance_S, x_um)
        s = class_ratio(gsp, labels, statistic=statistic, n_boot=n_boot, seed=seed + 1)
        out.update(
            {
                "spreading_conductance_ratio": s["ratio"],
                "spreading_conductance_ratio_ci95": s["ci"],
                "spreading_conductance_100_S": s["value_100"],
                "spreading_conductance_001_S": s["value_001"],
            }
        )
    return out


def _series_model(
    meta: dict[str, Any], overrides: dict[str, float | None]
) -> tuple[SeriesModel | None, str]:
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        model = SeriesModel.from_meta(meta, **given)
    except ValueError as e:
        if given:
            raise  # the user asked for it: say what is missing
        return None, f"unavailable ({e})"
    src = (
        "store rig snapshot"
        if not given
        else (
            "arguments"
            if len(given) >= len(RIG_PROPERTIES) - 1
            else "store rig snapshot + arguments"
        )
    )
    return model, src


def analyze_store(
    store: Any,
    *,
    r2_min: float = 0.9,
    rest_potential_V: float = 0.0,
    settle_fraction: float = 0.5,
    settle_s: float | None = None,
    branch: str = "all",
    potential_range_V: tuple[float, float] | None = None,
    anisotropy: float | None = None,
    min_period_um: float | None = None,
    max_period_um: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    series: dict[str, float | None] | None = None,
    return_maps: bool = False,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Analyze a scan store (path or ScanStore). See the module docstring.

    ``series``: series-model parameters (names of :class:`SeriesModel`)
    overriding the store's rig snapshot; without a snapshot and without them
    the spreading ratio and conductivities are None. ``anisotropy``
    (sigma_fast / sigma_slow) adds the fast-axis conductivity of each domain.
    ``n_boot`` and ``seed`` are accepted for older callers and unused: the
    intervals come from the fits (:mod:`.classify`), not from a bootstrap of
    fixed labels (which left the classification's errors out).

    Keys (units in the names; angles CCW from +x, along the stripes, in
    [0, 180)): ``period_um``, ``period_um_err``, ``angle_deg``,
    ``angle_deg_err`` (all None when ``stripes_significant`` is False),
    ``conductance_ratio`` (measured, [100] over [001], at the map centre),
    ``conductance_ratio_ci95``, ``spreading_conductance_ratio`` (+ ``_ci95``),
    ``fraction_001`` (+ ``_ci95``), ``conductivity_S_per_cm`` (per domain,
    isotropic inversion), ``sigma_fast_S_per_cm`` (with ``anisotropy``),
    ``domains`` (per-class statistics of the conductance), ``classification``
    (method, misclassification, separation, band width, blur, ...),
    ``stripe_test`` (p-value, frequencies searched, ...), ``drift``,
    ``boundary_lines``, ``height``, ``quality``, ``resolution``,
    ``series_model``, ``notes`` and ``warnings`` (a list of ``{code,
    message}``; the codes are listed in the README's Analysis section), and
    more. ``maps`` (arrays) with ``return_maps``.
    """
    with open_store(store) as s:
        meta = s.meta
        g = s.grid
        path = str(s.path)
        plan = s.plan()
        cm = conductance_maps(
            s,
            r2_min=r2_min,
            rest_potential_V=rest_potential_V,
            settle_fraction=settle_fraction,
            settle_s=settle_s,
            branch=branch,
            potential_range_V=potential_range_V,
            scheduler=scheduler,
        )
        try:
            hm = height_map(s)
        except ValueError:
            hm = None
    G = cm["conductance_S"]
    n_valid = int(np.isfinite(G).sum())
    geo = {"x0_um": g.x0_um, "y0_um": g.y0_um, "pitch_um": g.pitch_um}
    out: dict[str, Any] = {
        "store": path,
        "name": meta.get("plan", {}).get("name", ""),
        "measurement": plan.measurement.kind,
        "method": cm["method"],
        "potential_V": cm["potential_V"],
        "map_shape": [g.ny, g.nx],
        "pitch_um": g.pitch_um,
        "grid": {**geo, "nx": g.nx, "ny": g.ny},
        "quality": quality_counts(cm["quality"]),
        "n_valid": n_valid,
    }
    model, src = _series_model(meta, dict(series or {}))
    out["notes"] = []
    if n_valid == 0:
        q = out["quality"]
        seen = ", ".join(f"{k} {v}" for k, v in q.items() if v) or "no points"
        hint = (
            "; the current range was too small: measure again with a larger one"
            if q.get("saturated")
            else ""
        )
        raise ValueError(
            f"{path}: no pixel has a valid conductance, nothing to analyze ({seen}){hint}"
        )
    gv = G[np.isfinite(G)]
    out["conductance_median_S"] = float(np.median(gv))
    if n_valid < MIN_MAP_PIXELS:
        out["notes"].append(
            f"only {n_valid} valid pixels: no stripe, domain or ratio analysis "
            f"(needs {MIN_MAP_PIXELS})"
        )
        for k in (
            "period_um",
            "period_um_err",
            "angle_deg",
            "angle_deg_err",
            "conductance_ratio",
            "conductance_ratio_ci95",
            "spreading_conductance_ratio",
            "spreading_conductance_ratio_ci95",
            "fraction_001",
            "fraction_001_ci95",
            "stripes_significant",
        ):
            out[k] = None
        out["warnings"] = [
            {
                "code": "too_few_pixels",
                "message": f"only {n_valid} valid pixels: no stripe, domain or ratio analysis "
                f"(needs {MIN_MAP_PIXELS})",
            }
        ]
        out["series_model"] = model.as_dict() if model else None
        out["series_model_source"] = src
        if model is not None:
            x = cm["x_um"][np.isfinite(G)]
            gsp = model.spreading_conductance_S(gv, x)
            out["spreading_conductance_median_S"] = float(np.nanmedian(gsp))
            out["conductivity_median_S_per_cm"] = float(
                np.nanmedian(model.conductivity_S_per_cm(gsp))
            )
        out["height"] = _height_summary(hm)
        result = to_jsonable(out)
        if return_maps:
            result["maps"] = {k: v for k, v in cm.items() if isinstance(v, np.ndarray)}
        return result
    # the acquisition order (drift), the footprint (blending, lines)
    order = cm.get("t_start_s")
    if order is None or not np.isfinite(order[np.isfinite(G)]).all():
        order = cm.get("visit_index")
    part, maps = analyze_map(
        G,
        **geo,
        x_um=cm["x_um"],
        order=order,
        model=model,
        footprint_radius_um=_footprint_um(meta, model),
        anisotropy=anisotropy,
        min_period_um=min_period_um,
        max_period_um=max_period_um,
    )
    out["notes"].extend(part.pop("notes"))
    out.update(part)
    out["series_model"] = model.as_dict() if model else None
    out["series_model_source"] = src
    rel_noise = out["relative_noise"]
    if model is not None:
        frac = None
        if out["spreading_conductance_100_S"] and out["conductance_100_S"]:
            frac = out["conductance_100_S"] / out["spreading_conductance_100_S"]
        out["resolution"] = footprint_resolution(
            model.footprint_radius_nm * 1e-3,
            g.pitch_um,
            relative_noise=rel_noise,
            series_fraction=frac if frac else 1.0,
        )
    else:
        out["resolution"] = None
    out["height"] = _height_summary(hm)
    result = to_jsonable(out)
    if return_maps:
        allm = {k: v for k, v in cm.items() if isinstance(v, np.ndarray)}
        allm.update(maps)
        if hm is not None:
            allm["height_um"] = hm["height_um"]
            allm["height_flat_um"] = hm["height_flat_um"]
        result["maps"] = allm
    return result


@single_blas_thread
def analyze_map(
    conductance_S: np.ndarray,
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    x_um: np.ndarray | None = None,
    order: np.ndarray | None = None,
    model: SeriesModel | None = None,
    footprint_radius_um: float | None = None,
    anisotropy: float | None = None,
    min_period_um: float | None = None,
    max_period_um: float | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The map part of :func:`analyze_store` on arrays: stripes (with the
    significance test), lines, classes, the ratios with their intervals, the
    drift, and the warnings.

    ``conductance_S``: the map (NaN: not measured); ``x_um``: where each pixel
    was measured (default: the pixel centres); ``order``: each pixel's time
    or place in the acquisition (the drift); ``model``: the series model (the
    spreading ratio and the conductivities); ``footprint_radius_um``: the
    droplet's (default: the model's).

    Returns the result's keys (not JSON-ready: numpy values, NaN) and the
    maps (``labels``, ``conductance_flat_S``, ``boundary_lines``, ``p001``,
    ``drift_factor``, and with a model ``spreading_conductance_S``,
    ``conductivity_S_per_cm``, ``sigma_fast_S_per_cm``).
    """
    G = np.asarray(conductance_S, dtype=float)
    if G.ndim != 2:
        raise ValueError(f"a conductance map must be 2-D, got shape {G.shape}")
    gv = G[np.isfinite(G)]
    if gv.size < MIN_MAP_PIXELS:
        raise ValueError(
            f"only {gv.size} valid pixels: no stripe, domain or ratio analysis "
            f"(needs {MIN_MAP_PIXELS})"
        )
    nx = G.shape[1]
    geo = {"x0_um": x0_um, "y0_um": y0_um, "pitch_um": pitch_um}
    if x_um is None:
        x_um = pixel_centers(G.shape, x0_um, y0_um, pitch_um)[0]
    a_um = footprint_radius_um
    if a_um is None and model is not None:
        a_um = model.footprint_radius_nm * 1e-3
    out: dict[str, Any] = {"notes": []}
    warnings: list[dict[str, str]] = []
    # stripes: a period only when the periodic contrast is significant
    st = stripe_period_angle(
        G,
        **geo,
        min_period_um=min_period_um,
        max_period_um=max_period_um,
        order=order,
        footprint_radius_um=a_um,
    )
    warnings.extend(st["warnings"])
    sig = bool(st["significant"])
    out["stripes_significant"] = sig
    out["stripe_test"] = {
        "p_value": st["p_value"],
        "alpha": st["alpha"],
        "n_frequencies": st["n_frequencies"],
        "coverage": st["coverage"],
        "sharpness": st["sharpness"],
        "relative_amplitude": st["relative_amplitude"],
        "best_period_um": st["period_um"],
        "best_angle_deg": st["angle_deg"],
        "nyquist_fraction": st["nyquist_fraction"],
        "n_periods": st["n_periods"],
        "second_peak": st["second_peak"],
    }
    stripe_keys = {
        "period_um": st["period_um"],
        "period_um_err": st["period_um_err"],
        "angle_deg": st["angle_deg"],
        "angle_deg_err": st["angle_deg_err"],
        "period_um_err_fit": st["period_um_err_fit"],
        "angle_deg_err_fit": st["angle_deg_err_fit"],
        "period_um_err_jackknife": st["period_um_err_jackknife"],
        "angle_deg_err_jackknife": st["angle_deg_err_jackknife"],
        "period_um_acf": st["acf"]["period_um"],
        "angle_deg_acf": st["acf"]["angle_deg"],
        "stripe_amplitude_S": st["amplitude"],
        "stripe_amplitude_to_noise": st["amplitude_to_noise"],
    }
    out.update(stripe_keys if sig else dict.fromkeys(stripe_keys))
    pa, aa = st["acf"]["period_um"], st["acf"]["angle_deg"]
    if sig and math.isfinite(pa):
        d_ang = abs((st["angle_deg"] - aa + 90.0) % 180.0 - 90.0)
        if abs(pa / st["period_um"] - 1.0) > 0.15 or d_ang > 10.0:
            out["notes"].append(
                f"the autocorrelation ({st['acf']['period_um']:.3g} um, "
                f"{st['acf']['angle_deg']:.1f} deg) disagrees with the spectrum "
                f"({st['period_um']:.3g} um, {st['angle_deg']:.1f} deg): the stripes may be "
                "irregular or barely sampled (pitch vs period); look at the map"
            )
    lines = st["line_mask"]
    out["boundary_lines"] = {
        "pixels": int(lines.sum()),
        "fraction": st["line_fraction"],
        "width_limit_um": st["line_width_limit_um"],
    }
    if st["line_fraction"] >= MIN_LINE_FRACTION:
        warnings.append(
            {
                "code": "boundary_lines",
                "message": f"{int(lines.sum())} pixels ({st['line_fraction']:.1%}) lie on thin "
                f"low-current lines (no wider than {st['line_width_limit_um']:.3g} um: the "
                "footprint plus a pitch): grain boundaries, not [001] bands; they are left out "
                "of the stripe test and of both classes",
            }
        )
    # domains: the stripe model when the stripes are significant, else a mixture
    r_series = None
    gamma = 1.0
    xc = x0_um + nx * pitch_um / 2
    if model is not None:
        r_series = (
            model.pipette_resistance_ohm
            + model.interface_resistance_ohm
            + float(model.film_resistance_ohm(xc))
        )
        # the spreading resistance's share of a [100] landing (the upper
        # conductances are the [100] ones)
        gamma = float(np.clip(1.0 - np.quantile(gv, 0.8) * r_series, 0.02, 1.0))
    # with a series model, the film term's variation across the map is known:
    # each landing as it would have measured at the map centre (no smooth
    # x term left to confuse with domains the size of the map)
    H = G
    x_deg = None
    if model is not None:
        d_film = np.asarray(model.film_resistance_ohm(x_um), float) - float(
            model.film_resistance_ohm(xc)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            rr = 1.0 / G - d_film
            H = np.where(np.isfinite(G) & (rr > 0), 1.0 / rr, np.nan)
        x_deg = 1
    cl = classify_domains(
        H,
        **geo,
        stripes=st,
        order=order,
        exclude=lines,
        footprint_radius_um=a_um,
        series_fraction=gamma,
        x_degree=x_deg,
    )
    warnings.extend(cl["warnings"])
    if cl["method"] == "none" and cl.get("no_classes_reason"):
        out["notes"].append("no two domain classes: " + cl["no_classes_reason"])
    if cl["method"] == "mixture" and not sig:
        # two classes of values without a pattern: [001] grains, or grains
        # at different levels for another reason
        doubt = st["line_fraction"] >= MIN_LINE_FRACTION
        warnings.append(
            {
                "code": "classification_uncertain",
                "message": "without stripes the two classes come from a mixture of the values "
                "alone: they are [100]/[001] domains only if the film has whole [001] grains; "
                + (
                    "here grain boundaries run through the map, and grains behind resistive "
                    "boundaries (further from the pad through them) sit at lower levels and "
                    "split the same way, so the ratio may not be a domain ratio"
                    if doubt
                    else "look at the map (TEM, EBSD) before taking the ratio as a domain ratio"
                ),
            }
        )
    labels = cl["labels"]
    rm = ratio_from_step(cl)
    sys_terms = cl.get("log_step_systematic") or {}
    stat_half = Z95 * cl["log_step_se"] if math.isfinite(cl["log_step_se"]) else math.nan
    s_ = cl["log_step"]
    out.update(
        {
            "fraction_001": cl["fraction_001"] if cl["method"] != "none" else None,
            "fraction_001_ci95": cl["fraction_001_ci95"] if cl["method"] != "none" else None,
            "conductance_ratio": rm["ratio"],
            "conductance_ratio_ci95": rm["ci"],
            "conductance_ratio_ci95_statistical": (
                [safe_exp(-(s_ + stat_half)), safe_exp(-(s_ - stat_half))]
                if math.isfinite(s_)
                else [None, None]
            ),
            "conductance_ratio_systematic_log": sys_terms,
            "conductance_100_S": cl["level_100"],
            "conductance_001_S": cl.get("level_001"),
            "n_100": cl["n_100"],
            "n_001": cl["n_001"],
            "ratio_statistic": cl["method"],
            "classification": {
                k: cl.get(k)
                for k in (
                    "method",
                    "misclassification",
                    "separation",
                    "band_width_um",
                    "blur_um",
                    "duty_001",
                    "outliers",
                    "n_core_100",
                    "n_core_001",
                    "misfit",
                    "delta_bic",
                    "no_classes_reason",
                )
                if k in cl
            },
            "spreading_conductance_ratio": None,
            "spreading_conductance_ratio_ci95": None,
            "spreading_conductance_100_S": None,
            "spreading_conductance_001_S": None,
        }
    )
    out["classification"]["series_fraction"] = gamma
    ref = reference_level(H, cl, order=order, x_degree=x_deg)
    out["drift"] = {
        # the slow trend along the acquisition order fitted with the classes'
        # step held (relative, max - min); without classes other slow
        # structure (grain terraces) can enter it
        "range": ref["drift_range"],
        "estimated": order is not None,
        "reference": "the first landing",
    }
    if (
        order is not None
        and math.isfinite(s_)
        and ref["drift_range"] > DRIFT_WARNING * max(abs(s_), 0.01)
    ):
        warnings.append(
            {
                "code": "slow_drift",
                "message": f"the conductance drifted by {ref['drift_range']:.1%} along the "
                "acquisition order (e.g. the back contact charging up); it is fitted and removed, "
                "and the interval carries the spread over other drift models",
            }
        )
    flat = cl["flattened"]
    out["domains"] = domain_statistics(flat, labels)
    gsp = sigma = sigma_fast = None
    if model is not None:
        out["series_terms_ohm"] = {
            "pipette": model.pipette_resistance_ohm,
            "interface": model.interface_resistance_ohm,
            "film_at_center": float(model.film_resistance_ohm(xc)),
        }
        sp = spreading_ratio(cl, ref, r_series)
        if math.isfinite(sp["ratio"]):
            out.update(
                {
                    "spreading_conductance_ratio": sp["ratio"],
                    "spreading_conductance_ratio_ci95": sp["ci"],
                    "spreading_conductance_100_S": sp["spreading_100_S"],
                    "spreading_conductance_001_S": sp["spreading_001_S"],
                }
            )
        # per-pixel maps (for display): the drift taken out first
        gsp = model.spreading_conductance_S(G / ref["drift_factor"], x_um)
        sigma = model.conductivity_S_per_cm(gsp)
        lv = {"100": sp["spreading_100_S"], "001": sp["spreading_001_S"]}
        out["conductivity_S_per_cm"] = {
            d: float(model.conductivity_S_per_cm(np.asarray(lv[d])))
            if lv[d] is not None and math.isfinite(lv[d])
            else None
            for d in ("100", "001")
        }
        if anisotropy is not None:
            sigma_fast = model.conductivity_S_per_cm(gsp, anisotropy=anisotropy, orientation=labels)
            out["sigma_fast_S_per_cm"] = {
                d: float(
                    model.conductivity_S_per_cm(
                        np.asarray(lv[d]), anisotropy=anisotropy, orientation=d
                    )
                )
                if lv[d] is not None and math.isfinite(lv[d])
                else None
                for d in ("100", "001")
            }
            out["anisotropy"] = anisotropy
    # noise: the pixel scatter relative to the level
    rel_noise = float(cl.get("noise", math.nan))
    if not math.isfinite(rel_noise):
        d100 = out["domains"]["100"]
        rel_noise = d100["mad_std"] / d100["median"] if d100["median"] else math.nan
    out["relative_noise"] = rel_noise
    out["warnings"] = _dedupe(warnings)
    maps = {
        "labels": labels,
        "conductance_flat_S": flat,
        "boundary_lines": lines,
        "p001": cl["p001"],
        "drift_factor": ref["drift_factor"],
    }
    if gsp is not None:
        maps["spreading_conductance_S"] = gsp
        maps["conductivity_S_per_cm"] = sigma
    if sigma_fast is not None:
        maps["sigma_fast_S_per_cm"] = sigma_fast
    return out, maps


def _dedupe(warnings: list[dict[str, str]]) -> list[dict[str, str]]:
    """One entry per (code, message), in order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for w in warnings:
        key = (w["code"], w["message"])
        if key not in seen:
            seen.add(key)
            out.append({"code": w["code"], "message": w["message"]})
    return out


def _footprint_um(meta: dict[str, Any], model: SeriesModel | None) -> float | None:
    """The droplet footprint radius (um): the series model's, else the plan's
    pipette (a store without film parameters still records its pipette)."""
    if model is not None:
        return model.footprint_radius_nm * 1e-3
    v = pipette_from_meta(meta).get("footprint_radius_nm")
    return float(v) * 1e-3 if v else None


def to_jsonable(obj: Any) -> Any:
    """numpy scalars -> Python, NaN/inf -> None, tuples -> lists (recursively)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray) and obj.ndim == 0:
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _height_summary(hm: dict[str, Any] | None) -> dict[str, Any] | None:
    """The topography facts of a height map (tilt, level, roughness), or None."""
    if hm is None:
        return None
    keys = ("slope_x_um_per_um", "slope_y_um_per_um", "offset_um", "roughness_rms_nm")
    return {k: hm[k] for k in keys}


def _method_words(r: dict[str, Any]) -> str:
    if r.get("method") == "ca":
        e = r.get("potential_V")
        return f"G = I / E at {e:g} V" if e is not None else "G = I / E"
    return "G = slope of the I-E fit"


def summary_text(result: dict[str, Any]) -> str:
    """Human-readable lines of an :func:`analyze_store` result, its warnings
    (``warning [code] message``) at the end."""

    def f(v: Any, fmt: str = "{:.4g}") -> str:
        return "n/a" if v is None else fmt.format(v)

    r = result
    head = [
        f"{r['store']}  ({r['name']})",
        f"  map              {r['map_shape'][0]} x {r['map_shape'][1]} px at {r['pitch_um']:g} um, "
        f"{r['measurement']} measurement, {_method_words(r)}, {r['n_valid']} valid pixels",
    ]
    warns = r.get("warnings") or []
    tail = [f"  warning          [{w['code']}] {w['message']}" for w in warns]
    said = {w["message"] for w in warns}
    tail += [f"  note             {n}" for n in r.get("notes", []) if n not in said]
    if r.get("stripes_significant") is None:  # too few pixels for a map analysis
        lines = [*head, f"  conductance      median {f(r.get('conductance_median_S'))} S"]
        if r.get("conductivity_median_S_per_cm") is not None:
            lines.append(
                f"  conductivity     median {f(r['conductivity_median_S_per_cm'])} S/cm (isotropic inversion)"
            )
        return "\n".join(lines + tail)
    lines = [
        *head,
        "  quality          " + ", ".join(f"{k} {v}" for k, v in r["quality"].items() if v),
    ]
    test = r.get("stripe_test") or {}
    if r.get("period_um") is not None:
        lines += [
            f"  stripes          period {f(r['period_um'])} +- {f(r['period_um_err'], '{:.2g}')} um, "
            f"angle {f(r['angle_deg'], '{:.2f}')} +- {f(r['angle_deg_err'], '{:.2g}')} deg "
            "(along the stripes, CCW from +x with y up; napari and the figures draw y down, "
            "where the stripes look turned clockwise by it); "
            f"amplitude/noise {f(r.get('stripe_amplitude_to_noise'), '{:.3g}')}, "
            f"p = {f(test.get('p_value'), '{:.2g}')}",
            f"  autocorrelation  period {f(r['period_um_acf'])} um, angle {f(r['angle_deg_acf'], '{:.2f}')} deg",
        ]
    else:
        lines.append(
            "  stripes          none: no periodic contrast above the smooth background and the "
            f"noise (best peak {f(test.get('best_period_um'), '{:.3g}')} um, "
            f"p = {f(test.get('p_value'), '{:.2g}')} over {f(test.get('n_frequencies'), '{:.0f}')} "
            "frequencies)"
        )
    cls = r.get("classification") or {}
    method = {
        "stripe_model": "classes from the stripe model",
        "mixture": "classes from a two-class mixture",
        "none": "no two domain classes",
    }.get(cls.get("method"), "n/a")
    lines.append(
        f"  [001] fraction   {f(r.get('fraction_001'), '{:.3f}')} (95% CI "
        f"{_ci(r.get('fraction_001_ci95'), '{:.3f}')}; {method})"
    )
    lines.append(
        f"  G[100]/G[001]    {f(r['conductance_ratio'])} (95% CI {_ci(r['conductance_ratio_ci95'])}, "
        f"of which noise and classification {_ci(r.get('conductance_ratio_ci95_statistical'))}) "
        "measured, series terms included, at the map centre"
    )
    if r.get("spreading_conductance_ratio") is not None:
        lines.append(
            f"  spreading ratio  {f(r['spreading_conductance_ratio'])} (95% CI "
            f"{_ci(r['spreading_conductance_ratio_ci95'])}) after subtracting pipette, interface, film"
        )
        lines.append(
            "                   (the interval carries the noise, the classification, the drift and "
            "background models and the footprint blending; the series-model parameters, "
            f"from {r.get('series_model_source')}, are taken as exact: vary them, e.g. "
            "--tip-radius-nm, to see how much the ratio depends on them)"
        )
        c = r.get("conductivity_S_per_cm") or {}
        lines.append(
            f"  conductivity     [100] {f(c.get('100'))} S/cm, [001] {f(c.get('001'))} S/cm "
            "(isotropic inversion, sqrt(sigma_in sigma_z))"
        )
        if r.get("sigma_fast_S_per_cm"):
            sf = r["sigma_fast_S_per_cm"]
            lines.append(
                f"  sigma_fast       [100] {f(sf.get('100'))} S/cm, [001] {f(sf.get('001'))} S/cm "
                f"(anisotropy {r.get('anisotropy'):g})"
            )
    elif r.get("conductance_ratio") is None:
        lines.append("  spreading ratio  n/a: no two domain classes")
    else:
        why = (
            f"with the series model from {r.get('series_model_source')}, pipette + interface "
            "+ film leave no positive spreading resistance (check the pipette and interface "
            "parameters)"
            if r.get("series_model")
            else "no series model: give the pipette's parameters (--tip-radius-nm ...)"
        )
        lines.append(f"  spreading ratio  n/a: {why}")
    d = r.get("drift") or {}
    if d.get("estimated") and r.get("conductance_ratio") is not None:
        lines.append(
            f"  drift            {f(d.get('range'), '{:.2%}')} along the acquisition order "
            "(fitted and removed)"
        )
    if r.get("resolution"):
        res = r["resolution"]
        lines.append(
            f"  resolution       {f(res['resolution_um'])} um (footprint {f(res['footprint_diameter_um'])} um, "
            f"2 x pitch {f(res['sampling_limit_um'])} um); narrowest blocking line visible: "
            f"{f(res.get('min_detectable_width_nm'), '{:.3g}')} nm"
        )
    if r.get("height"):
        h = r["height"]
        lines.append(
            f"  topography       tilt x {f(h['slope_x_um_per_um'])}, y {f(h['slope_y_um_per_um'])} um/um, "
            f"rms {f(h['roughness_rms_nm'], '{:.3g}')} nm after plane removal"
        )
    return "\n".join(lines + tail)


def _ci(ci: Any, fmt: str = "{:.4g}") -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"{fmt.format(ci[0])}..{fmt.format(ci[1])}"
