"""Warwick WEC-SPM (LabVIEW) hopping runs in TDMS files.

Layout (one group ``Data``, one value per sample in every channel):
``X (um)``, ``Y (um)``, ``Z (um)``, ``V1 (V)``, ``V2 (V)``, ``Current1 (A)``,
``Current 2 (A)``, ``Current 3 (A)``, ``FeedbackType `` (the name ends in a
space: 1 first approach, 2 approach, 3 retract, anything else moving or
measuring), ``Line Number``, ``Lockin Amplitude``, ``Lockin  Phase`` (two
spaces) and ``dt(s)``, the time step of each sample (its cumulative sum is
the time).

A landing is the samples from the contact (the end of an approach segment:
feedback 1 or 2 turning to another value) up to the retract (3); a landing
never spans two line numbers. Its position is the median X, Y of its
samples, its contact height the Z of the approach's last sample, and its
approach curve (Z, current) is kept. Several files of one run are read in
the order of their first line number (then their file name), the time
running on from one file to the next. Units come from the channel names.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import (
    ImportedScan,
    ImportInputError,
    ImportOptions,
    Landing,
    json_safe,
    sample_rate,
    split_unit,
    unit_factor,
)

if TYPE_CHECKING:
    from pathlib import Path

GROUP = "Data"
FEEDBACK = "FeedbackType "
LINE = "Line Number"
DT = "dt(s)"
X, Y, Z = "X (um)", "Y (um)", "Z (um)"
CURRENT = "Current1 (A)"
POTENTIAL = "V1 (V)"
FIRST_APPROACH, APPROACH, RETRACT = 1, 2, 3


def _read(path: Path) -> Any:
    from nptdms import TdmsFile

    try:
        return TdmsFile.read(str(path))
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ImportInputError(
            f"{path}: not a readable TDMS file ({type(e).__name__}: {msg}); it may be "
            "truncated or damaged"
        ) from None


def _channel(group: Any, name: str, path: Path, quantity: str | None) -> np.ndarray:
    """A channel's data as float (scaled to the store's unit by the unit in
    its name), or ImportInputError naming what is missing."""
    names = [c.name for c in group.channels()]
    if name not in names:
        near = [n for n in names if n.strip().lower() == name.strip().lower()]
        hint = f" (found {near[0]!r}: the exact name matters)" if near else ""
        raise ImportInputError(
            f"{path}: group {GROUP!r} has no channel {name!r}{hint}; channels found: "
            f"{', '.join(repr(n) for n in names) or 'none'}"
        )
    data = np.asarray(group[name][:], dtype=float)
    if quantity is None:
        return data
    _label, unit = split_unit(name)
    if unit is None:
        raise ImportInputError(f"{path}: channel {name!r} names no unit, e.g. '{name} (A)'")
    return data * unit_factor(unit, quantity, f"{path}: channel {name!r}")


def _load(path: Path, opts: ImportOptions) -> tuple[dict[str, np.ndarray], float, dict[str, Any]]:
    """(channels in the store's units, sample rate, metadata) of one file."""
    tdms = _read(path)
    groups = {g.name: g for g in tdms.groups()}
    if GROUP not in groups:
        raise ImportInputError(
            f"{path}: no group {GROUP!r} (WEC-SPM writes its channels there); groups found: "
            f"{', '.join(repr(g) for g in groups) or 'none'}"
        )
    grp = groups[GROUP]
    names = [c.name for c in grp.channels()]
    pot_name = opts.potential_channel or POTENTIAL
    if opts.potential_channel is None and pot_name not in names:
        pot_name = None
    chans: dict[str, np.ndarray] = {
        "x": _channel(grp, X, path, "length"),
        "y": _channel(grp, Y, path, "length"),
        "z": _channel(grp, Z, path, "length"),
        "i": _channel(grp, opts.current_channel or CURRENT, path, "current"),
        "fb": _channel(grp, FEEDBACK, path, None),
        "dt": _channel(grp, DT, path, "time"),
    }
    if pot_name is not None:
        chans["v"] = _channel(grp, pot_name, path, "potential")
    chans["line"] = _channel(grp, LINE, path, None) if LINE in names else np.zeros_like(chans["x"])
    lengths = {k: v.size for k, v in chans.items()}
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise ImportInputError(
            f"{path}: the channels hold different numbers of samples ({detail}): the file is "
            "truncated or damaged"
        )
    n = chans["x"].size
    if n == 0:
        raise ImportInputError(f"{path}: the channels hold no sample")
    for k, label in (("x", X), ("y", Y), ("fb", FEEDBACK), ("dt", DT)):
        bad = ~np.isfinite(chans[k])
        if bad.any():
            raise ImportInputError(
                f"{path}: channel {label!r} holds NaN or infinity at sample "
                f"{int(np.flatnonzero(bad)[0])} ({int(bad.sum())} samples)"
            )
    fs = sample_rate(chans["dt"], f"{path}: channel {DT!r}")
    meta = {
        "file": path.name,
        "properties": dict(tdms.properties),
        "group_properties": dict(grp.properties),
        "channels": {c.name: dict(c.properties) for c in grp.channels()},
        "n_samples": n,
        "first_line": float(chans["line"][0]),
        "potential_channel": pot_name,
    }
    return chans, fs, json_safe(meta)


def _segment(
    path: Path, chans: dict[str, np.ndarray], t0: float
) -> tuple[list[Landing], float, list[str]]:
    """(landings, end time, notes) of one file's channels, its time from ``t0``."""
    n = chans["x"].size
    t = t0 + np.concatenate(([0.0], np.cumsum(chans["dt"])[:-1]))
    fb = np.rint(chans["fb"]).astype(np.int64)
    line = chans["line"]
    approach = (fb == FIRST_APPROACH) | (fb == APPROACH)
    new_line = np.concatenate(([True], line[1:] != line[:-1]))
    starts = np.flatnonzero(approach & (np.concatenate(([True], ~approach[:-1])) | new_line))
    landings: list[Landing] = []
    notes: list[str] = []
    for a0 in starts:
        a1 = a0
        while a1 + 1 < n and approach[a1 + 1] and not new_line[a1 + 1]:
            a1 += 1
        s0 = a1 + 1
        e = s0
        while e < n and fb[e] != RETRACT and not approach[e] and not new_line[e]:
            e += 1
        if e >= n and s0 < n:
            notes.append(
                f"{path.name}: the last landing (from sample {s0}) has no retract: the run "
                "ends during it"
            )
        sl = slice(s0, e)
        has = e > s0
        xs = chans["x"][sl] if has else chans["x"][a1 : a1 + 1]
        ys = chans["y"][sl] if has else chans["y"][a1 : a1 + 1]
        landings.append(
            Landing(
                x_um=float(np.median(xs)),
                y_um=float(np.median(ys)),
                current_A=chans["i"][sl].astype(np.float32),
                potential_V=chans["v"][sl].astype(np.float32) if "v" in chans else None,
                contact_z_um=float(chans["z"][a1]) if has else math.nan,
                t_start_s=float(t[s0]) if has else float(t[a1]),
                approach_z_um=chans["z"][a0 : a1 + 1].astype(np.float32),
                approach_current_A=chans["i"][a0 : a1 + 1].astype(np.float32),
            )
        )
    if not landings:
        raise ImportInputError(
            f"{path}: no landing found: {FEEDBACK!r} never marks an approach (1 or 2) "
            f"in {n} samples"
        )
    no_contact = sum(1 for la in landings if la.n == 0)
    if no_contact:
        notes.append(
            f"{path.name}: {no_contact} approaches were followed directly by a retract: "
            "recorded as no_contact"
        )
    return landings, float(t[-1] + chans["dt"][-1]), notes


def _clock(meta: dict[str, Any]) -> float | None:
    """Unix time of a file's start, from a date-time property, if any."""
    import datetime as dt

    for props in (meta.get("properties", {}), meta.get("group_properties", {})):
        for v in props.values():
            if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] == "T":
                try:
                    d = dt.datetime.fromisoformat(v)
                except ValueError:
                    continue
                return (d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp()
    return None


def read(paths: list[Path], opts: ImportOptions) -> ImportedScan:
    """Read one hopping run from one or several TDMS files."""
    loaded = [(p, *_load(p, opts)) for p in paths]
    loaded.sort(key=lambda r: (r[3]["first_line"], r[0].name))
    rates = [r[2] for r in loaded]
    if max(rates) / min(rates) - 1 > 0.01:
        detail = ", ".join(f"{r[0].name} {r[2]:g} Hz" for r in loaded)
        raise ImportInputError(f"the files sample at different rates ({detail}): not one run")
    landings: list[Landing] = []
    notes: list[str] = []
    t = 0.0
    for p, chans, _fs, meta in loaded:
        got, t_end, n = _segment(p, chans, t)
        meta["time_s"] = [t, t_end]
        t = t_end
        landings.extend(got)
        notes.extend(n)
    metas = [r[3] for r in loaded]
    clock = _clock(metas[0])
    pots = {m["potential_channel"] for m in metas}
    if None in pots:
        notes.append(f"no potential channel ({POTENTIAL!r}) in every file: no potential stored")
        for la in landings:
            la.potential_V = None
    scan = ImportedScan(
        fmt="wec-tdms",
        sources=[r[0] for r in loaded],
        landings=landings,
        sample_rate_Hz=float(np.median(rates)),
        source_metadata={"files": metas},
        notes=notes,
        start_time_s=clock,
    )
    scan.inferred.update(
        map_channel=opts.current_channel or CURRENT,
        potential_channel=None if None in pots else pots.pop(),
        landing_rule="contact (end of a FeedbackType 1/2 segment) to the retract (3), "
        "within one line number",
        contact_height="Z (um) at the last sample of the approach",
        file_order=[r[0].name for r in loaded],
    )
    if clock is not None:
        scan.inferred["wall_time"] = "from the first file's date-time property"
    return scan
