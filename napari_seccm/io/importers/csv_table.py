"""Generic CSV tables, and eChemTips exports read through them.

Two shapes, told apart by a time column (or ``--csv-shape``):

- one row per sample: ``x (um)``, ``y (um)``, ``t (s)``, ``I (A)`` and
  optionally ``E (V)``, ``z (um)`` and a point column (``point``, ``id``,
  ``landing``); a landing is the rows of one point id, or, without one, a
  run of rows at the same x and y. Time runs from each landing's first row.
- one row per point: ``x (um)``, ``y (um)``, ``I (A)`` (or ``value (A)``)
  and optionally ``z (um)`` (contact height) and ``E (V)``.

Units come from the header (``name (unit)`` or ``name [unit]``: um, nm, mm;
A, mA, uA, nA, pA; V, mV; s, ms), read by pint; a column without a unit, or
with one of another quantity, is refused. ``--columns ROLE=NAME[@UNIT],...``
maps other column names (roles: x, y, z, t, E, I, value, point). Lines
starting with ``#`` before the header are kept as the file's comments; the
delimiter is a comma, semicolon or tab.

eChemTips: no public description of its CSV and JSON streams was found, so
``--format echemtips`` reads the CSV as above and requires its JSON
companion (given, or next to the CSV with the same name), which is kept
whole in the provenance; a ``columns`` object in it maps the columns like
``--columns``.
"""

from __future__ import annotations

import itertools
import json
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

#: role -> (header names recognised, quantity)
ROLES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "x": (("x", "x position", "xpos", "x_pos"), "length"),
    "y": (("y", "y position", "ypos", "y_pos"), "length"),
    "z": (("z", "height", "contact z", "contact height", "contact_z"), "length"),
    "t": (("t", "time"), "time"),
    "E": (("e", "v", "potential", "voltage"), "potential"),
    "I": (("i", "current"), "current"),
    "value": (("value", "mean current", "map value"), "current"),
    "point": (("point", "id", "landing", "index", "pixel"), None),
}
#: the largest table read, bytes (a 1000 x 1000 map of 256 samples is ~10 GB of text)
MAX_TABLE_BYTES = 4 << 30
#: the largest companion JSON read, bytes
MAX_JSON_BYTES = 16 << 20


def read_table(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """(column names, float rows, comment lines) of a CSV; a cell that is
    not a number is refused naming its row and column (``nan`` is a number)."""
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise ImportInputError(f"{path}: {size:,} bytes, above the {MAX_TABLE_BYTES:,} read")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ImportInputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.splitlines()
    comments: list[str] = []
    k = 0
    while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith("#")):
        if lines[k].strip():
            comments.append(lines[k].lstrip()[1:].strip())
        k += 1
    if k >= len(lines):
        raise ImportInputError(f"{path}: no header line (only comments or nothing)")
    head = lines[k]
    delim = max((",", ";", "\t"), key=head.count)
    names = [n.strip().strip('"') for n in head.split(delim)]
    if len(names) < 2:
        raise ImportInputError(
            f"{path}: the header {head[:80]!r} holds one column; columns are separated by "
            "commas, semicolons or tabs"
        )
    body = [ln for ln in lines[k + 1 :] if ln.strip()]
    if not body:
        raise ImportInputError(f"{path}: a header but no data rows")
    import io

    try:  # numpy's parser first; on a bad cell, the slow path names it
        rows = np.loadtxt(io.StringIO("\n".join(body)), delimiter=delim, ndmin=2)
        if rows.shape == (len(body), len(names)):
            return names, rows, comments
    except ValueError:
        pass
    rows = np.empty((len(body), len(names)))
    for r, ln in enumerate(body):
        cells = ln.split(delim)
        if len(cells) != len(names):
            raise ImportInputError(
                f"{path}: row {k + 2 + r} has {len(cells)} cells, the header {len(names)} columns"
            )
        for c, cell in enumerate(cells):
            try:
                rows[r, c] = float(cell)
            except ValueError:
                raise ImportInputError(
                    f"{path}: row {k + 2 + r}, column {names[c]!r}: {cell.strip()[:40]!r} is "
                    "not a number"
                ) from None
    return names, rows, comments


def _parse_mapping(text: str | dict[str, str], where: str) -> dict[str, str]:
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            role, sep, name = part.partition("=")
            if not sep:
                raise ImportInputError(f"{where}: {part!r} is not ROLE=COLUMN")
            items.append((role.strip(), name.strip()))
    out = {}
    for role, name in items:
        if role not in ROLES:
            raise ImportInputError(f"{where}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        out[role] = str(name)
    return out


def resolve_columns(
    names: list[str], mapping: dict[str, str], path: Path
) -> dict[str, tuple[int, float]]:
    """role -> (column index, factor to the store's unit) for the roles present."""
    out: dict[str, tuple[int, float]] = {}
    labels = [split_unit(n) for n in names]
    for role, (aliases, quantity) in ROLES.items():
        unit: str | None = None
        if role in mapping:
            name, _, unit_given = mapping[role].partition("@")
            idx = [i for i, n in enumerate(names) if n == name or labels[i][0] == name]
            if not idx:
                raise ImportInputError(
                    f"{path}: no column {name!r} (mapped to {role}); columns: {', '.join(names)}"
                )
            i = idx[0]
            unit = unit_given or labels[i][1]
        else:
            hits = [i for i, (lab, _u) in enumerate(labels) if lab.lower() in aliases]
            if not hits:
                continue
            i = hits[0]
            unit = labels[i][1]
        if quantity is None:
            out[role] = (i, 1.0)
            continue
        if unit is None:
            raise ImportInputError(
                f"{path}: column {names[i]!r} ({role}) names no unit: write it as "
                f"'{labels[i][0]} (unit)' or map it with --columns {role}={labels[i][0]}@UNIT"
            )
        out[role] = (i, unit_factor(unit, quantity, f"{path}: column {names[i]!r}"))
    return out


def _col(rows: np.ndarray, cols: dict[str, tuple[int, float]], role: str) -> np.ndarray:
    i, f = cols[role]
    return rows[:, i] * f


def _require(cols: dict, roles: tuple[str, ...], path: Path, shape: str, names: list[str]) -> None:
    missing = [r for r in roles if r not in cols]
    if missing:
        want = {"x": "x (um)", "y": "y (um)", "t": "t (s)", "I": "I (A)"}
        raise ImportInputError(
            f"{path}: a table of one row per {shape} needs the columns "
            f"{', '.join(want.get(r, r) for r in roles)}; missing "
            f"{', '.join(want.get(r, r) for r in missing)} (columns: {', '.join(names)}; map "
            "others with --columns)"
        )


def _finite(v: np.ndarray, path: Path, name: str, offset: int) -> None:
    bad = ~np.isfinite(v)
    if bad.any():
        raise ImportInputError(
            f"{path}: column {name!r} holds NaN or an empty value at data row "
            f"{int(np.flatnonzero(bad)[0]) + offset} ({int(bad.sum())} rows): every "
            f"{name.split(' ')[0]} must be a number"
        )


def _landings_per_sample(
    path: Path, names: list[str], rows: np.ndarray, cols: dict
) -> tuple[list[Landing], float, list[str]]:
    _require(cols, ("x", "y", "t", "I"), path, "sample", names)
    x, y, t = _col(rows, cols, "x"), _col(rows, cols, "y"), _col(rows, cols, "t")
    for role, v in (("x", x), ("y", y), ("t", t)):
        _finite(v, path, names[cols[role][0]], 1)
    cur = _col(rows, cols, "I")
    pot = _col(rows, cols, "E") if "E" in cols else None
    z = _col(rows, cols, "z") if "z" in cols else None
    if "point" in cols:
        pid = _col(rows, cols, "point")
        _finite(pid, path, names[cols["point"][0]], 1)
        brk = np.flatnonzero(np.diff(pid) != 0) + 1
        rule = f"rows of one {names[cols['point'][0]]!r}"
        if np.unique(pid).size != brk.size + 1:
            raise ImportInputError(
                f"{path}: the rows of a point ({names[cols['point'][0]]!r}) are not together: "
                "each landing's samples must be consecutive rows"
            )
    else:
        brk = np.flatnonzero((np.diff(x) != 0) | (np.diff(y) != 0)) + 1
        rule = "runs of rows at the same x and y"
    bounds = np.concatenate(([0], brk, [len(rows)]))
    steps = np.concatenate([np.diff(t[a:b]) for a, b in itertools.pairwise(bounds)])
    fs = sample_rate(steps, f"{path}: column {names[cols['t'][0]]!r}")
    landings = []
    for a, b in itertools.pairwise(bounds):
        landings.append(
            Landing(
                x_um=float(np.median(x[a:b])),
                y_um=float(np.median(y[a:b])),
                current_A=cur[a:b].astype(np.float32),
                potential_V=None if pot is None else pot[a:b].astype(np.float32),
                contact_z_um=float(z[a]) if z is not None else math.nan,
                t_start_s=float(t[a]),
            )
        )
    return landings, fs, [f"landings: {rule}"]


def _landings_per_point(
    path: Path, names: list[str], rows: np.ndarray, cols: dict
) -> tuple[list[Landing], float | None, list[str]]:
    if "I" not in cols and "value" in cols:
        cols = {**cols, "I": cols["value"]}
    _require(cols, ("x", "y", "I"), path, "point", names)
    x, y = _col(rows, cols, "x"), _col(rows, cols, "y")
    for role, v in (("x", x), ("y", y)):
        _finite(v, path, names[cols[role][0]], 1)
    val = _col(rows, cols, "I")
    z = _col(rows, cols, "z") if "z" in cols else np.full(len(rows), math.nan)
    notes = []
    bad = int((~np.isfinite(val)).sum())
    if bad:
        notes.append(f"{path.name}: {bad} points have no current value (NaN): recorded as fault")
    landings = [
        Landing(
            x_um=float(x[k]),
            y_um=float(y[k]),
            value_A=float(val[k]),
            contact_z_um=float(z[k]),
        )
        for k in range(len(rows))
    ]
    return landings, None, notes


def _load_json(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ImportInputError(f"{path}: above the {MAX_JSON_BYTES:,} bytes a companion may have")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ImportInputError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, dict):
        raise ImportInputError(f"{path}: a JSON {type(data).__name__}, not an object")
    return data


def read(paths: list[Path], opts: ImportOptions, *, echemtips: bool = False) -> ImportedScan:
    """One scan from one CSV (and its JSON companion, if any)."""
    tables = [p for p in paths if p.suffix.lower() != ".json"]
    companions = [p for p in paths if p.suffix.lower() == ".json"]
    if len(tables) != 1:
        raise ImportInputError(
            f"a CSV import reads one table, got {len(tables)} ({', '.join(p.name for p in tables)})"
        )
    path = tables[0]
    if not companions:
        side = path.with_suffix(".json")
        if side.is_file():
            companions = [side]
    if echemtips and not companions:
        raise ImportInputError(
            f"{path}: an eChemTips import needs the JSON stream written with the CSV (give it, "
            f"or put it next to the CSV as {path.with_suffix('.json').name})"
        )
    sidecar = {p.name: _load_json(p) for p in companions}
    mapping: dict[str, str] = {}
    for name, data in sidecar.items():
        if isinstance(data.get("columns"), dict):
            mapping.update(_parse_mapping(data["columns"], f"{name}: columns"))
    mapping.update(_parse_mapping(opts.columns, "--columns"))
    names, rows, comments = read_table(path)
    cols = resolve_columns(names, mapping, path)
    shape = opts.csv_shape or ("samples" if "t" in cols else "points")
    if shape not in ("samples", "points"):
        raise ImportInputError(f"--csv-shape must be samples or points, got {shape!r}")
    if shape == "samples":
        landings, fs, notes = _landings_per_sample(path, names, rows, cols)
    else:
        landings, fs, notes = _landings_per_point(path, names, rows, cols)
    scan = ImportedScan(
        fmt="echemtips" if echemtips else "csv",
        sources=[path, *companions],
        landings=landings,
        sample_rate_Hz=fs,
        source_metadata=json_safe(
            {"columns": names, "comments": comments, "rows": len(rows), "companions": sidecar}
        ),
        notes=[n for n in notes if not n.startswith("landings:")],
    )
    if fs is None and "E" in cols:
        e = _col(rows, cols, "E")
        e = e[np.isfinite(e)]
        if e.size and float(np.ptp(e)) <= 5e-3:
            scan.potential_V = float(np.median(e))
            scan.potential_source = f"from column {names[cols['E'][0]]!r}"
        elif e.size:
            scan.notes.append("the points' potentials differ: the plan records none")
    scan.inferred.update(
        shape=f"one row per {shape[:-1]}",
        columns={r: names[i] for r, (i, _f) in cols.items()},
        map_channel=names[cols["I"][0]] if "I" in cols else names[cols["value"][0]],
    )
    rule = next((n.split(": ", 1)[1] for n in notes if n.startswith("landings:")), None)
    if rule:
        scan.inferred["landing_rule"] = rule
    return scan
