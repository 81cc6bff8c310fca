"""Park Systems spectroscopy TIFFs (data category 2): a curve at each point.

A SmartScan spectroscopy export (an I-V or I-t curve at every point of a
hopping map) is a Park TIFF (see :mod:`.park_tiff`) whose image header says
data category 2 and whose private tags 50438 and 50439 hold the spectroscopy
header and data. The layout, as Park's own Python reader (pspylib,
``TiffReader.__loadSpectHeaderAndData__``, 2018) reads it and AtomicJ's
``ParkSpectroscopyHeader2`` agrees (all little-endian):

- tag 50438, the header: eight channel slots of 96 bytes each (name, 32
  UTF-16 characters; unit, 8; data gain, double; is-x-axis and is-y-axis
  flags, int32), then the number of channels, the average count, the number
  of samples per channel and point (both sweep directions), the number of
  points, the driving channel's index (int32 each); the forward and
  backward periods (s) and speeds (float32); a grid flag; per channel an
  offset (8 doubles), a log-scale and a squared flag (8 int32 each); the
  grid's columns, a reference-image flag, grid size and offset (um,
  doubles); force-distance and I-V parameters (max, min, start and end
  voltage, delayed start time...); a source gain and unit, an
  extended-header flag, the spectroscopy type (0-9: 3 is I-V), eight
  type-specific and five thermal values, the data type (offset 1108: 0
  int16, 1 int32, 2 float32), a set point and 22 reserved int32 (to byte
  1208); then per point its x, y (taken as um) and a time (float32 each);
- tag 50439, the data: for each point, for each channel, its samples.

A value is ``raw * channel gain + channel offset`` in the channel's unit
(AtomicJ multiplies by the gain; pspylib returns raw counts; neither uses
the offset, which is 0 in the files they describe). The current is the
first y-axis channel in a current unit (``--current-channel NAME`` picks
another), the potential the driving channel when it is in volts (else the
first channel in volts; ``--potential-channel NAME``); a driving channel in
seconds gives the time, else the sample rate is the samples per direction
over the forward (and backward) period.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import (
    ImportedScan,
    ImportInputError,
    ImportOptions,
    Landing,
    json_safe,
    sample_rate,
    unit_factor,
)
from .park_tiff import DATA_TYPES, _as_bytes, _text

if TYPE_CHECKING:
    from pathlib import Path

TAG_SPECT_HEADER, TAG_SPECT_DATA = 50438, 50439
MAX_CHANNELS = 8
#: one channel slot of the header (96 bytes)
CHANNEL_FIELDS = (
    ("name", "64s"),
    ("unit", "16s"),
    ("gain", "d"),
    ("is_x_axis", "i"),
    ("is_y_axis", "i"),
)
#: the header after the eight channel slots, in order (see the module doc)
HEADER_FIELDS = (
    ("n_channels", "i"),
    ("average", "i"),
    ("n_samples", "i"),
    ("n_points", "i"),
    ("driving_channel", "i"),
    ("forward_period_s", "f"),
    ("backward_period_s", "f"),
    ("forward_speed", "f"),
    ("backward_speed", "f"),
    ("grid_used", "i"),
    ("channel_offset", "8d"),
    ("channel_log_scale", "8i"),
    ("channel_squared", "8i"),
    ("grid_columns", "i"),
    ("has_reference_image", "i"),
    ("grid_size_x_um", "d"),
    ("grid_size_y_um", "d"),
    ("grid_offset_x_um", "d"),
    ("grid_offset_y_um", "d"),
    ("force_constant_N_per_m", "d"),
    ("sensitivity_V_per_um", "d"),
    ("force_limit_V", "f"),
    ("time_interval_s", "f"),
    ("max_voltage_V", "f"),
    ("min_voltage_V", "f"),
    ("start_voltage_V", "f"),
    ("end_voltage_V", "f"),
    ("delayed_start_time_s", "f"),
    ("z_servo", "i"),
    ("source_gain", "d"),
    ("source_unit", "16s"),
    ("extended_header", "i"),
    ("spect_type", "i"),
    ("type_parameters", "8f"),  # photo-current (or, type 9, P/E) parameters
    ("thermal_parameters", "5f"),
    ("data_type", "i"),
    ("setpoint", "f"),
    ("setpoint_unit_type", "f"),
    ("reserved", "22i"),
)
SPECT_TYPES = {
    0: "FD/IV (old)",
    1: "indenter (old)",
    2: "force-distance",
    3: "I-V",
    4: "nano indenter",
    5: "photo current",
    6: "I-D (current-distance)",
    7: "thermal analysis",
    8: "amplitude-distance",
    9: "P-E",
}
CHANNEL_BYTES = struct.calcsize("<" + "".join(f for _, f in CHANNEL_FIELDS))
FIXED_BYTES = MAX_CHANNELS * CHANNEL_BYTES + struct.calcsize(
    "<" + "".join(f for _, f in HEADER_FIELDS)
)
POINT_FMT = "<3f"  # x, y (um), time (s)


def _unpack(fields: tuple[tuple[str, str], ...], raw: bytes, pos: int) -> tuple[dict, int]:
    out: dict[str, Any] = {}
    for name, fmt in fields:
        vals = struct.unpack_from("<" + fmt, raw, pos)
        pos += struct.calcsize("<" + fmt)
        if fmt.endswith("s"):
            out[name] = _text(vals[0])
        else:
            out[name] = vals[0] if len(vals) == 1 else list(vals)
    return out, pos


def parse_header(raw: bytes, path: Path) -> tuple[list[dict], dict[str, Any], np.ndarray]:
    """(the used channels, the header's other fields, the points' x, y, time
    as an (n, 3) array); a header too short for its fields or its point
    table, or with counts out of range, is refused naming the field."""
    where = f"{path}: Park spectroscopy header (tag {TAG_SPECT_HEADER})"
    if len(raw) < FIXED_BYTES:
        raise ImportInputError(
            f"{where} is {len(raw)} bytes; the layout read here has {FIXED_BYTES} bytes before "
            "the point table: truncated, or an older header without point positions"
        )
    pos, slots = 0, []
    for _ in range(MAX_CHANNELS):
        ch, pos = _unpack(CHANNEL_FIELDS, raw, pos)
        slots.append(ch)
    h, pos = _unpack(HEADER_FIELDS, raw, pos)
    nc, ns, npt, drv = h["n_channels"], h["n_samples"], h["n_points"], h["driving_channel"]
    if not 1 <= nc <= MAX_CHANNELS:
        raise ImportInputError(f"{where}: number of channels {nc} is not 1-{MAX_CHANNELS}")
    if not 0 <= drv < nc:
        raise ImportInputError(
            f"{where}: driving channel index {drv} is not one of the {nc} channels (0-{nc - 1})"
        )
    if ns < 1:
        raise ImportInputError(f"{where}: samples per curve {ns} (needs at least 1)")
    if npt < 1:
        raise ImportInputError(f"{where}: number of points {npt} (needs at least 1)")
    need = FIXED_BYTES + npt * struct.calcsize(POINT_FMT)
    if len(raw) < need:
        raise ImportInputError(
            f"{where} is {len(raw)} bytes, too short for the positions of its {npt} points "
            f"(needs {need} bytes): truncated, or the point count is wrong"
        )
    pts = np.frombuffer(raw, dtype="<f4", count=3 * npt, offset=pos).astype(float).reshape(npt, 3)
    channels = []
    for k, ch in enumerate(slots[:nc]):
        ch.update(
            index=k,
            offset=h["channel_offset"][k],
            log_scale=h["channel_log_scale"][k],
            squared=h["channel_squared"][k],
        )
        channels.append(ch)
    return channels, h, pts


def _pick(
    channels: list[dict], quantity: str, name: str | None, path: Path, prefer: list[int]
) -> tuple[dict | None, float]:
    """The channel of ``quantity`` named ``name`` (refused if absent or of
    another quantity), else the first of ``prefer`` (channel indices, in
    order) whose unit is of that quantity; (None, nan) when none is."""
    if name is not None:
        hit = [c for c in channels if c["name"] == name]
        if not hit:
            have = ", ".join(repr(c["name"]) for c in channels)
            raise ImportInputError(f"{path}: no spectroscopy channel {name!r} (channels: {have})")
        c = hit[0]
        return c, unit_factor(c["unit"], quantity, f"{path}: channel {name!r} unit")
    for k in prefer:
        try:
            return channels[k], unit_factor(channels[k]["unit"], quantity, "")
        except ImportInputError:
            continue
    return None, math.nan


def _described(ch: dict) -> str:
    """``'Current' (nA)``, or ``'Current' (xyz: an unknown unit)``."""
    unit = ch["unit"] or "no unit"
    try:
        unit_factor(ch["unit"], "current", "")
    except ImportInputError as e:
        if "unknown unit" in str(e) or "cannot read the unit" in str(e) or not ch["unit"]:
            return f"{ch['name']!r} ({unit}: an unknown unit)"
    return f"{ch['name']!r} ({unit})"


def _values(raw: np.ndarray, ch: dict, factor: float, path: Path) -> np.ndarray:
    """A channel's samples in the store's unit (see the module doc)."""
    for flag, what in (("log_scale", "a log scale"), ("squared", "squared values")):
        if ch[flag]:
            raise ImportInputError(
                f"{path}: channel {ch['name']!r} is stored as {what} (header flag "
                f"channel_{flag}): not imported"
            )
    gain, off = ch["gain"], ch["offset"]
    if not (math.isfinite(gain) and gain != 0 and math.isfinite(off)):
        raise ImportInputError(
            f"{path}: channel {ch['name']!r} has data gain {gain!r} and offset {off!r}: no "
            "values can be read (the gain must be finite and non-zero)"
        )
    return (raw.astype(float) * gain + off) * factor


def _rate(h: dict[str, Any], t: np.ndarray | None, path: Path) -> tuple[float, str]:
    """Samples per second: from a time channel's steps, else from the samples
    per direction over the forward (and backward) period."""
    where = f"{path}: Park spectroscopy"
    if t is not None:
        return sample_rate(np.diff(t), f"{where} time channel"), "the time channel's steps"
    periods = [p for p in (h["forward_period_s"], h["backward_period_s"]) if p != 0]
    if not periods or not all(math.isfinite(p) and p > 0 for p in periods):
        raise ImportInputError(
            f"{where}: forward / backward period {h['forward_period_s']!r} / "
            f"{h['backward_period_s']!r} s and no time channel: no sample rate (the periods "
            "must be positive, s)"
        )
    per_dir = h["n_samples"] / len(periods)
    fs = sample_rate(np.array([p / per_dir for p in periods]), f"{where} periods")
    how = "forward" + (" and backward" if len(periods) == 2 else "")
    return fs, f"{h['n_samples']} samples over the {how} period ({sum(periods):g} s)"


def read(
    path: Path, opts: ImportOptions, tags: dict[int, Any], image: dict[str, Any]
) -> ImportedScan:
    """One landing per spectroscopy point of ``path`` (``tags``: its Park
    tags; ``image``: its decoded image header)."""
    for tag, what in ((TAG_SPECT_HEADER, "spectroscopy header"), (TAG_SPECT_DATA, "data")):
        if tag not in tags:
            raise ImportInputError(
                f"{path}: a Park spectroscopy file (data category 2) without its {what} (tag {tag})"
            )
    channels, h, pts = parse_header(_as_bytes(tags[TAG_SPECT_HEADER]), path)
    nc, ns, npt = h["n_channels"], h["n_samples"], h["n_points"]
    dt = DATA_TYPES.get(h["data_type"])
    if dt is None:
        raise ImportInputError(
            f"{path}: Park spectroscopy header data_type {h['data_type']} is unknown (0 int16, "
            "1 int32, 2 float32)"
        )
    raw = _as_bytes(tags[TAG_SPECT_DATA])
    need = npt * nc * ns * np.dtype(dt).itemsize
    if len(raw) != need:
        raise ImportInputError(
            f"{path}: the spectroscopy data (tag {TAG_SPECT_DATA}) holds {len(raw)} bytes; the "
            f"header's {npt} points x {nc} channels x {ns} samples of {np.dtype(dt).name} need "
            f"{need}: {'truncated' if len(raw) < need else 'the point count disagrees with the data'}"
        )
    data = np.frombuffer(raw, dtype=dt).reshape(npt, nc, ns)
    drv = h["driving_channel"]
    ys = [c["index"] for c in channels if c["is_y_axis"] and c["index"] != drv]
    others = [c["index"] for c in channels if c["index"] not in ys and c["index"] != drv]
    cur_ch, cur_f = _pick(channels, "current", opts.current_channel, path, ys + others)
    if cur_ch is None:
        listed = ", ".join(_described(c) for c in channels)
        raise ImportInputError(
            f"{path}: no spectroscopy channel in a current unit (A, mA, uA, nA, pA); the "
            f"channels are {listed}: no current to import (--current-channel NAME)"
        )
    pot_ch, pot_f = _pick(channels, "potential", opts.potential_channel, path, [drv, *ys, *others])
    time_ch, time_f = _pick(channels, "time", None, path, [drv])
    cur = _values(data[:, cur_ch["index"]], cur_ch, cur_f, path)
    pot = None if pot_ch is None else _values(data[:, pot_ch["index"]], pot_ch, pot_f, path)
    t = None if time_ch is None else _values(data[0, time_ch["index"]], time_ch, time_f, path)
    fs, rate_rule = _rate(h, t, path)
    if not np.isfinite(pts[:, :2]).all():
        k = int(np.flatnonzero(~np.isfinite(pts[:, :2]).all(axis=1))[0])
        raise ImportInputError(
            f"{path}: point {k}'s position ({pts[k, 0]!r}, {pts[k, 1]!r}) um in the header's "
            "point table is not a number"
        )
    times = pts[:, 2]
    has_times = bool(np.isfinite(times).all() and np.any(times != 0))
    held = float(image["sample_bias_V"]) if opts.potential_V is None else opts.potential_V
    landings = [
        Landing(
            x_um=float(pts[k, 0]),
            y_um=float(pts[k, 1]),
            current_A=cur[k].astype(np.float32),
            potential_V=np.full(ns, held, np.float32) if pot is None else pot[k].astype(np.float32),
            t_start_s=float(times[k]) if has_times else math.nan,
        )
        for k in range(npt)
    ]
    notes = []
    if image.get("rotation_deg"):
        notes.append(f"{path.name}: scan rotation {image['rotation_deg']:g} deg is not applied")
    if pot is None:
        notes.append(
            f"{path.name}: no spectroscopy channel in volts: traces/potential_V holds the "
            f"held potential, {held:g} V (the header's sample bias, or --potential-V), not a "
            "recording"
        )
    spect = {
        "channels": channels,
        **{k: v for k, v in h.items() if k not in ("reserved", "channel_offset")},
        "spect_type_name": SPECT_TYPES.get(h["spect_type"], "unknown"),
        "points_x_y_time": pts,
    }
    scan = ImportedScan(
        fmt="park-tiff",
        sources=[path],
        landings=landings,
        sample_rate_Hz=fs,
        source_metadata=json_safe({"headers": {path.name: {**image, "spectroscopy": spect}}}),
        notes=notes,
        potential_V=float(image["sample_bias_V"]),
        potential_source="from the header's sample bias (unverified for SECCM files)",
    )
    scan.inferred.update(
        map_channel=f"{cur_ch['name']} ({cur_ch['unit']}) in {path.name}",
        potential_channel=(
            f"none: the held potential, {held:g} V"
            if pot_ch is None
            else f"{pot_ch['name']} ({pot_ch['unit']})"
        ),
        landing_rule="one landing per spectroscopy point, its whole curve (every channel's "
        "samples of both sweep directions) from the contact",
        positions="the spectroscopy header's point table (x, y float32), taken as um",
        sample_rate_rule=rate_rule,
        value="raw * channel gain + channel offset, in the channel's unit",
        spect_type=SPECT_TYPES.get(h["spect_type"], f"unknown ({h['spect_type']})"),
    )
    if has_times:
        scan.inferred["t_start"] = "the point table's time (s), unverified"
    return scan
