"""Closed-form physics of an SECCM droplet cell on a thin solid electrolyte.

Every function takes and returns SI units (m, S/m, Ohm, F, C, A, s) unless its
name says otherwise. These are the formulas of the project's domain notes; the
simulator and the analysis tests share them, so that a test compares the
simulated instrument against the physics rather than against itself.

Series model of one landing (disk contact of radius ``a``)::

    R_total = R_pipette + R_interface + R_spreading + R_film

with

- ``R_pipette = rho / (pi r tan(theta))`` (conical pipette, tip radius r),
- ``R_interface = ASR / (pi a^2)`` (Li+ transfer at the liquid/LLTO interface),
- ``R_spreading`` = Holm spreading resistance of a disk on an anisotropic
  half-space (``1 / (4 a sigma)`` when isotropic),
- ``R_film = ln(L / a) / (2 pi sigma_in t)`` (thin film collected at distance L).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ellipk

#: Boltzmann constant, J/K
K_B = 1.380649e-23


def pipette_resistance(
    tip_radius_m: float, half_angle_deg: float, conductivity_S_per_m: float
) -> float:
    """Resistance of a conical pipette filled with electrolyte, Ohm.

    ``R = rho / (pi r tan(theta))``: the integral of ``rho dz / (pi (r + z
    tan(theta))^2)`` from the tip to infinity.
    """
    rho = 1.0 / conductivity_S_per_m
    return rho / (math.pi * tip_radius_m * math.tan(math.radians(half_angle_deg)))


def interface_resistance(asr_ohm_m2: float, footprint_radius_m: float) -> float:
    """Charge-transfer resistance of the droplet/film interface, Ohm."""
    return asr_ohm_m2 / (math.pi * footprint_radius_m**2)


def spreading_conductance(
    radius_m: float | np.ndarray,
    sigma_x: float | np.ndarray,
    sigma_y: float | np.ndarray,
    sigma_z: float | np.ndarray,
) -> np.ndarray:
    """Conductance of a disk electrode on an anisotropic half-space, S.

    The principal conductivities are ``sigma_x``, ``sigma_y`` (in the surface
    plane) and ``sigma_z`` (normal to it). Scaling each axis by
    ``sqrt(sigma_i)`` maps the problem onto an isotropic half-space in which the
    disk becomes an ellipse with semi-axes ``a / sqrt(sigma_x)`` and
    ``a / sqrt(sigma_y)``; the conductance of an elliptical disk of semi-axes
    ``alpha >= beta`` on a unit-conductivity half-space is
    ``2 pi alpha / K(e^2)`` with ``e^2 = 1 - beta^2 / alpha^2``. Hence::

        G = sqrt(sx sy sz) * 2 pi alpha / K(1 - beta^2 / alpha^2)

    which reduces to Holm's ``4 a sqrt(sigma_in sigma_z)`` for an in-plane
    isotropic film (``K(0) = pi / 2``).
    """
    a = np.asarray(radius_m, dtype=float)
    sx = np.asarray(sigma_x, dtype=float)
    sy = np.asarray(sigma_y, dtype=float)
    sz = np.asarray(sigma_z, dtype=float)
    s_min = np.minimum(sx, sy)
    s_max = np.maximum(sx, sy)
    alpha = a / np.sqrt(s_min)  # the longer semi-axis comes from the slower axis
    m = 1.0 - s_min / s_max
    return np.sqrt(sx * sy * sz) * 2.0 * np.pi * alpha / ellipk(m)


def orientation_conductivities(
    sigma_fast: float, sigma_slow: float, orientation: str
) -> tuple[float, float, float]:
    """Principal conductivities ``(x, y, z)`` of an LLTO domain, S/m.

    LLTO conducts fast in the ab-plane and slowly along c. ``"001"``: the c axis
    is normal to the film (fast in-plane, slow out of plane). ``"100"``: the c
    axis lies in the plane (fast normal, one fast and one slow in-plane axis).
    """
    if orientation == "001":
        return sigma_fast, sigma_fast, sigma_slow
    if orientation == "100":
        return sigma_fast, sigma_slow, sigma_fast
    raise ValueError(f"orientation must be '001' or '100', not {orientation!r}")


def domain_conductance_ratio(anisotropy: float) -> float:
    """``G[100] / G[001]`` of the spreading term alone, for ``sigma_fast/slow``."""
    g100 = spreading_conductance(1.0, *orientation_conductivities(1.0, 1 / anisotropy, "100"))
    g001 = spreading_conductance(1.0, *orientation_conductivities(1.0, 1 / anisotropy, "001"))
    return float(g100 / g001)


def film_resistance(
    distance_m: float | np.ndarray,
    footprint_radius_m: float,
    sigma_inplane_S_per_m: float,
    thickness_m: float,
) -> np.ndarray:
    """In-plane resistance of a thin film from the contact to a collector, Ohm.

    ``ln(L / a) / (2 pi sigma t)``; ``L`` is clipped at ``a`` (no negative
    resistance when the contact sits on the pad edge).
    """
    L = np.maximum(np.asarray(distance_m, dtype=float), footprint_radius_m)
    return np.log(L / footprint_radius_m) / (2.0 * np.pi * sigma_inplane_S_per_m * thickness_m)


def double_layer_charge(cdl_F_per_m2: float, footprint_radius_m: float, delta_v: float) -> float:
    """Charge that flows when the droplet lands, C: ``C_dl * pi a^2 * dV``."""
    return cdl_F_per_m2 * math.pi * footprint_radius_m**2 * delta_v


def thermal_noise_rms(
    feedback_ohm: float, bandwidth_hz: float, temperature_k: float = 295.0
) -> float:
    """Johnson noise current of the feedback resistor, A rms: sqrt(4kTB/R_f)."""
    return math.sqrt(4.0 * K_B * temperature_k * bandwidth_hz / feedback_ohm)


def one_pole_enbw(cutoff_hz: float, sample_rate_hz: float) -> float:
    """Equivalent noise bandwidth of the amplifier's digital one-pole filter, Hz.

    For ``y[n] = a y[n-1] + (1 - a) x[n]`` with ``a = exp(-2 pi fc / fs)`` the
    white-noise power gain is ``(1 - a) / (1 + a)``, so the ENBW is
    ``fs / 2 * (1 - a) / (1 + a)`` (about ``pi / 2 * fc`` when ``fc << fs``).
    """
    a = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate_hz)
    return sample_rate_hz / 2.0 * (1.0 - a) / (1.0 + a)
