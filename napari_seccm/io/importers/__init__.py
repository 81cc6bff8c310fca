"""Importers of other SECCM programs' files into ``*.seccm.zarr`` stores.

One module per format, each a ``read(paths, options) -> ImportedScan``:

- ``wec_tdms``: Warwick WEC-SPM (LabVIEW) TDMS hopping runs;
- ``park_tiff``: Park Systems (SmartScan / XEI) TIFF images with their
  private header tags, and (``park_spectroscopy``) spectroscopy TIFFs, one
  curve per point;
- ``heka_mat``: HEKA PatchMaster / PotMaster MATLAB exports, one sweep per
  landing, positions from a file or a grid;
- ``csv_table``: generic CSV tables (one row per sample or per point), and
  eChemTips exports read through them with a column mapping.

:func:`import_files` reads, checks and writes a store (``_common.write_store``);
``docs/importing.md`` says what each format maps to what and what was verified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._common import FORMATS, IMPORTER_VERSION, ImportInputError, ImportOptions

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "FORMATS",
    "IMPORTER_VERSION",
    "ImportInputError",
    "ImportOptions",
    "detect_format",
    "import_files",
    "read_files",
]

#: file suffixes each format is detected by (content is checked too)
SUFFIXES = {
    ".tdms": "wec-tdms",
    ".tif": "park-tiff",
    ".tiff": "park-tiff",
    ".mat": "heka-mat",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
}
#: companion files that are read along with the data files, never alone
COMPANIONS = (".json",)


def _is_park_tiff(path: Path) -> bool:
    from .park_tiff import is_park_tiff

    return is_park_tiff(path)


def detect_format(paths: Sequence[Path]) -> str:
    """The format of ``paths`` (their data files), from suffix and content;
    :class:`ImportInputError` when unknown or mixed."""
    companions = COMPANIONS
    if any(p.suffix.lower() == ".mat" for p in paths):
        companions = (*COMPANIONS, ".csv", ".tsv", ".txt")  # a HEKA export's positions
    data = [p for p in paths if p.suffix.lower() not in companions]
    if not data:
        raise ImportInputError(
            f"only companion files given ({', '.join(p.name for p in paths)}): name the data "
            "files too"
        )
    kinds = set()
    for p in data:
        fmt = SUFFIXES.get(p.suffix.lower())
        if fmt is None:
            raise ImportInputError(
                f"{p}: unknown format (suffix {p.suffix or 'none'!r}); napari-seccm imports "
                f"{', '.join(sorted(SUFFIXES))} files, or give --format "
                f"({', '.join(FORMATS)})"
            )
        if fmt == "park-tiff" and not _is_park_tiff(p):
            raise ImportInputError(
                f"{p}: a TIFF without Park Systems' header tags (50432-50435): not a Park "
                "image; an ordinary image opens in napari as an image (File > Open)"
            )
        kinds.add(fmt)
    if len(kinds) > 1:
        raise ImportInputError(
            f"the files are of different formats ({', '.join(sorted(kinds))}): import each "
            "format on its own"
        )
    return kinds.pop()


def read_files(
    paths: Sequence[str | Path], fmt: str = "auto", options: ImportOptions | None = None
):
    """Read and check ``paths`` (nothing is written): an ``ImportedScan``."""
    from ._common import check_sources

    opts = options or ImportOptions()
    files = check_sources(paths)
    if fmt == "auto":
        fmt = detect_format(files)
    elif fmt not in FORMATS:
        raise ImportInputError(f"unknown format {fmt!r}; one of auto, {', '.join(FORMATS)}")
    if fmt == "wec-tdms":
        from .wec_tdms import read
    elif fmt == "park-tiff":
        from .park_tiff import read
    elif fmt == "heka-mat":
        from .heka_mat import read
    else:
        from .csv_table import read

        return read(files, opts, echemtips=fmt == "echemtips")
    return read(files, opts)


def import_files(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    fmt: str = "auto",
    options: ImportOptions | None = None,
    overwrite: bool = False,
) -> Path:
    """Import ``paths`` into a new store at ``out`` (see the module doc).
    Bad input raises :class:`ImportInputError` (a ValueError) or
    FileNotFoundError / FileExistsError, and writes nothing."""
    from pathlib import Path

    from ...acquisition.store import ScanStore
    from ._common import write_store

    opts = options or ImportOptions()
    ScanStore.check_creatable(Path(out), overwrite=overwrite)  # before reading anything
    scan = read_files(paths, fmt, opts)
    return write_store(scan, out, opts, overwrite=overwrite)
