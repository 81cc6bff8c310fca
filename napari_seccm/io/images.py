"""Import TEM/STEM, optical and other images with their physical pixel size.

``load_image(path)`` reads Gatan DM3/DM4 and EMD files (through rosettasciio),
TIFF (pixel size from OME ``PhysicalSizeX/Y``, ImageJ ``unit`` + resolution
tags, FEI/Thermo metadata, or resolution tags with a ``ResolutionUnit``) and
PNG/JPEG (which never carry a physical pixel size: give one). The pixel size
is converted to micrometres, the unit of the stage frame.

A file without a length unit (no unit, ``pixel``, or a reciprocal-space unit
such as ``1/nm`` of a diffraction pattern) is never taken as um:
``load_image`` raises :class:`MissingScaleError` unless ``pixel_size_um`` is
given. The napari reader, which cannot ask, opens such an image at one data
unit per pixel, labelled ``pixel`` (not um), and shows a warning.

``optical_mosaic(core, x_range, y_range)`` snaps a grid of camera images
through a Micro-Manager core and stitches them in stage coordinates.

No Qt and no napari import at module level.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_BYTES",
    "ImageReadError",
    "ImageTooLargeError",
    "ImportedImage",
    "MissingScaleError",
    "SignalInfo",
    "file_sha256",
    "get_reader",
    "image_layer_data",
    "length_unit_to_um",
    "list_signals",
    "load_image",
    "optical_mosaic",
    "read_images",
]

#: file suffixes the image reader accepts (lower case)
IMAGE_SUFFIXES = (".dm3", ".dm4", ".emd", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
_DM = (".dm3", ".dm4")
_TIFF = (".tif", ".tiff")
_PLAIN = (".png", ".jpg", ".jpeg")

#: the most bytes of pixels an image file may declare before it is read; a
#: larger file is refused (``max_bytes=`` of :func:`load_image` raises it)
MAX_IMAGE_BYTES = 4 * 1024**3


class ImageReadError(ValueError):
    """A file that cannot be read as an image: the message names the file and
    what is wrong (truncated, another format under this suffix, ...)."""


class ImageTooLargeError(ImageReadError):
    """The file declares more pixel data than the limit (``max_bytes``)."""


def _one_line(e: BaseException | str, limit: int = 160) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _gib(n: float) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.3g} GiB"
    return f"{n / 1024**2:.3g} MiB" if n >= 1024**2 else f"{int(n):,} bytes"


def _check_declared(path: Path, what: str, shape: Any, dtype: Any, max_bytes: int) -> None:
    """Refuse a declared image larger than ``max_bytes`` before it is read."""
    try:
        n = math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize
    except (TypeError, ValueError) as e:
        raise ImageReadError(
            f"{path.name}: {what} declares an unreadable shape {shape!r} or type: {_one_line(e)}"
        ) from None
    if n > max_bytes:
        dims = " x ".join(str(int(s)) for s in shape)
        raise ImageTooLargeError(
            f"{path.name}: {what} declares {dims} pixels of {np.dtype(dtype)}, {_gib(n)}, "
            f"above the limit of {_gib(max_bytes)} (file size {_gib(path.stat().st_size)}); "
            "if the file is right, raise the limit: load_image(path, max_bytes=...)"
        )


# ------------------------------------------------------------------- units

#: symbols of length units, case-sensitive -> um per unit
_LENGTH_SYMBOLS: dict[str, float] = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "um": 1.0,
    "nm": 1e-3,
    "A": 1e-4,
    "Ang": 1e-4,
    "pm": 1e-6,
    "in": 25400.0,
}
#: names of length units, any case -> um per unit
_LENGTH_NAMES: dict[str, float] = {
    "meter": 1e6,
    "metre": 1e6,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "micron": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "angstrom": 1e-4,
    "picometer": 1e-6,
    "picometre": 1e-6,
    "inch": 25400.0,
    "inches": 25400.0,
}
#: strings that mean "no physical unit"
_NO_UNIT = {
    "",
    "pixel",
    "pixels",
    "px",
    "pix",
    "<undefined>",
    "undefined",
    "unknown",
    "none",
    "a.u.",
    "au",
    "arb",
    "arb. units",
    "reference frame",
    "referenceframe",
}


def _normalize_unit(unit: Any) -> str:
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    s = "" if unit is None else str(unit).strip()
    # ImageJ writes the micro sign as a literal escape
    for esc in ("\\u00B5", "\\u00b5", "\\u03BC", "\\u03bc", "\u03bc", "\u00b5"):
        s = s.replace(esc, "u")
    return s.replace("\u212b", "A").replace("\u00c5", "A")


def length_unit_to_um(unit: Any) -> float | None:
    """Micrometres per ``unit`` for a length unit, else None.

    Accepts the symbols m, cm, mm, um/µm/μm, nm, Å/A/Ang, pm, in (case-sensitive:
    'Nm' or 'MM' are not lengths) and the names metre/meter, micron,
    nanometre, angstrom, inch... (any case, singular or plural). None for an
    empty unit, 'pixel' and every non-length unit, including reciprocal-space
    units such as '1/nm' (diffraction patterns, FFTs).
    """
    s = _normalize_unit(unit)
    if not s or _is_reciprocal(s):
        return None
    if s in _LENGTH_SYMBOLS:
        return _LENGTH_SYMBOLS[s]
    key = s.lower()
    if key.endswith("s") and key[:-1] in _LENGTH_NAMES:
        key = key[:-1]
    return _LENGTH_NAMES.get(key)


def _is_reciprocal(s: str) -> bool:
    t = s.replace(" ", "").lower()
    return t.startswith("1/") or t.endswith("^-1") or t.endswith("-1") or t.endswith("⁻¹")


def _describe_unit(unit: str) -> str:
    s = _normalize_unit(unit)
    if s.lower() in _NO_UNIT:
        return "no length unit"
    if _is_reciprocal(s):
        return f"a reciprocal-space unit ({unit!r}: a diffraction pattern or an FFT?), not a length"
    return f"a unit that is not a length ({unit!r})"


class MissingScaleError(ValueError):
    """The file gives no length unit for its pixels; a pixel size is needed."""

    def __init__(
        self,
        path: str | Path,
        unit: str,
        *,
        hint: str = "",
        signal: str = "",
        what: str = "",
    ) -> None:
        self.path = Path(path)
        self.unit = unit
        what = what or _describe_unit(unit)
        where = f" (signal {signal})" if signal else ""
        #: what is wrong, without advice on how to call the API (for GUIs)
        self.problem = (
            f"{self.path.name}{where}: the image has {what} "
            f"(unit in the file: {unit!r}), so its pixels cannot be placed in micrometres."
        )
        if hint:
            self.problem += " " + hint
        super().__init__(
            f"{self.problem} Pass the pixel size, e.g. load_image({str(self.path)!r}, "
            "pixel_size_um=0.01) (um per pixel, or a (y, x) pair)."
        )


# ---------------------------------------------------------------- results


@dataclass
class SignalInfo:
    """One signal (dataset) of a file."""

    index: int
    title: str
    shape: tuple[int, ...]
    #: 'image' (2 signal axes), '1-D' (plot, spectrum), 'scalar' or 'n-D'
    kind: str
    units: tuple[str, ...]

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def describe(self) -> str:
        return f"#{self.index} {self.title!r} ({self.kind}, shape {self.shape})"


@dataclass
class ImportedImage:
    """An image and where its pixels are in um (see :func:`load_image`)."""

    data: np.ndarray
    #: (y, x) um per pixel; None if the image is unscaled (no length unit)
    pixel_size_um: tuple[float, float] | None
    #: where the pixel size came from: 'DM file', 'EMD file', 'OME PhysicalSize',
    #: 'ImageJ metadata', 'FEI metadata', 'TIFF resolution tags', 'user' or 'none'
    unit_source: str
    name: str
    #: (y, x) position of the first pixel's centre, um (pixels if unscaled)
    offset_um: tuple[float, float]
    #: metadata read from the file (format-specific)
    metadata: dict[str, Any]
    #: every signal of the file (one for TIFF/PNG/JPEG)
    signals: list[SignalInfo]
    path: Path
    sha256: str
    #: the unit string found in the file ('' if none)
    unit_in_file: str = ""
    #: index of the chosen signal among ``signals``
    signal: int = 0
    rgb: bool = False
    #: things the user should know (skipped signals, overrides, ...)
    notes: list[str] = field(default_factory=list)

    @property
    def scaled(self) -> bool:
        return self.pixel_size_um is not None

    @property
    def signal_title(self) -> str:
        return self.signals[self.signal].title if self.signals else ""

    @property
    def offset(self) -> tuple[float, float]:
        return self.offset_um

    def seccm_metadata(self) -> dict[str, Any]:
        """What a layer keeps to identify the file (an alignment refers to it)."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "pixel_size_um": list(self.pixel_size_um) if self.pixel_size_um else None,
            "unit_in_file": self.unit_in_file,
            "unit_source": self.unit_source,
            "signal": self.signal,
            "signal_title": self.signal_title,
        }

    def layer_kwargs(self) -> dict[str, Any]:
        """napari Image kwargs: scale in um and um units only when scaled."""
        lead = self.data.ndim - 2 - (1 if self.rgb else 0)
        if self.scaled:
            py, px = self.pixel_size_um  # type: ignore[misc]
            unit = "micrometer"
            name = self.name
        else:
            py = px = 1.0
            unit = "pixel"
            name = f"{self.name} [unscaled]"
        kw: dict[str, Any] = {
            "name": name,
            "scale": (1.0,) * lead + (py, px),
            "translate": (0.0,) * lead + tuple(self.offset_um),
            "units": ("pixel",) * lead + (unit, unit),
            "metadata": {"seccm_image": self.seccm_metadata()},
        }
        if self.rgb:
            kw["rgb"] = True
        else:
            kw["colormap"] = "gray"
        return kw

    def layer_data(self) -> tuple[np.ndarray, dict[str, Any], str]:
        return (self.data, self.layer_kwargs(), "image")


# --------------------------------------------------------------- reading


@dataclass
class _Axis:
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    navigate: bool = False


@dataclass
class _Raw:
    data: Any
    title: str
    axes: list[_Axis]  # one per array dimension (RGB sample axis excluded)
    metadata: dict[str, Any]
    source: str  # 'DM file', 'TIFF resolution tags', ...
    rgb: bool = False
    hint: str = ""  # for MissingScaleError

    def kind(self) -> str:
        n_sig = sum(1 for a in self.axes if not a.navigate)
        if n_sig == 2 and len(self.axes) >= 2 and not any(a.navigate for a in self.axes[-2:]):
            return "image"
        if n_sig == 0:
            return "scalar"
        if n_sig == 1:
            return "1-D"
        if n_sig == 2:
            return "image?"
        return "n-D"

    def info(self, index: int) -> SignalInfo:
        shape = tuple(int(s) for s in np.shape(self.data))
        return SignalInfo(index, self.title, shape, self.kind(), tuple(a.units for a in self.axes))


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _split_complex(raw: _Raw) -> list[_Raw]:
    """A complex signal (Velox DPC, FFT) as two real images: magnitude and
    phase (rad), which napari can show; a real signal as it is."""
    if not np.iscomplexobj(raw.data):
        return [raw]
    note = "a complex signal, opened as its magnitude and its phase (rad)"
    mag = _Raw(np.abs(raw.data), f"{raw.title} magnitude", raw.axes, dict(raw.metadata), raw.source)
    phase = _Raw(np.angle(raw.data), f"{raw.title} phase", raw.axes, dict(raw.metadata), raw.source)
    for r in (mag, phase):
        r.metadata["complex"] = note
    return [mag, phase]


def _rsciio_signals(
    path: Path,
    reader: Any,
    source: str,
    max_bytes: int = MAX_IMAGE_BYTES,
    lazy: bool = True,
    **kw: Any,
) -> list[_Raw]:
    kind = source.removesuffix(" file")
    article = "an" if kind[:1] in "AEIOU" else "a"
    try:
        # lazily: each signal's declared size is checked before its data is read
        sigs = list(reader(str(path), lazy=lazy, **kw))
    except (ImportError, MemoryError):
        raise
    except Exception as e:  # struct.error, KeyError, OSError... from a bad file
        raise ImageReadError(
            f"{path.name}: cannot be read as {article} {kind} file ({type(e).__name__}: "
            f"{_one_line(e)}): is it truncated, or another format under this name?"
        ) from e
    out: list[_Raw] = []
    for sig in sigs:
        axes_d = sorted(sig.get("axes", []), key=lambda a: int(a.get("index_in_array", 0)))
        axes = [
            _Axis(
                scale=float(1.0 if a.get("scale") is None else a["scale"]),
                offset=float(a.get("offset") or 0.0),
                units=str(a.get("units") or ""),
                navigate=bool(a.get("navigate", False)),
            )
            for a in axes_d
        ]
        md = sig.get("metadata", {}) or {}
        title = str(md.get("General", {}).get("title", "") or f"signal {len(out)}")
        meta = {"metadata": md, "original_metadata": sig.get("original_metadata", {})}
        lazy = sig["data"]
        _check_declared(
            path, f"signal {title!r}", getattr(lazy, "shape", ()), lazy.dtype, max_bytes
        )
        try:
            data = np.asarray(lazy)
        except MemoryError:
            raise
        except Exception as e:
            raise ImageReadError(
                f"{path.name}: the data of signal {title!r} cannot be read "
                f"({type(e).__name__}: {_one_line(e)}): is the file truncated?"
            ) from e
        out.extend(_split_complex(_Raw(data, title, axes, meta, source)))
    return out


def _read_dm(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> list[_Raw]:
    from rsciio.digitalmicrograph import file_reader

    return _rsciio_signals(path, file_reader, "DM file", max_bytes)


def _read_emd(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> list[_Raw]:
    try:
        from rsciio.emd import file_reader
    except ImportError as e:  # h5py is an optional dependency of rosettasciio
        raise ImportError(
            f"reading EMD files needs h5py ({e}); install it: pip install h5py"
        ) from e
    _check_hdf5_sizes(path, max_bytes)
    # not lazily: rosettasciio's lazy Velox reader fails on unchunked datasets;
    # every dataset's declared size is checked above instead
    return _rsciio_signals(path, file_reader, "EMD file", max_bytes, lazy=False)


def _check_hdf5_sizes(path: Path, max_bytes: int) -> None:
    """Refuse an HDF5 (EMD) file with a dataset declared above ``max_bytes``
    before any is read; a file that is not HDF5 is an ImageReadError."""
    import h5py

    big: list[tuple[str, Any, Any]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.shape:
            n = math.prod(int(s) for s in obj.shape) * obj.dtype.itemsize
            if n > max_bytes and not big:
                big.append((name, obj.shape, obj.dtype))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except Exception as e:  # not HDF5, truncated...
        raise ImageReadError(
            f"{path.name}: cannot be read as an EMD (HDF5) file ({type(e).__name__}: "
            f"{_one_line(e)}): is it truncated, or another format under this name?"
        ) from e
    if big:
        name, shape, dtype = big[0]
        _check_declared(path, f"dataset {name!r}", shape, dtype, max_bytes)


def _ratio(v: Any) -> float:
    if isinstance(v, tuple):
        num, den = (float(x) for x in v[:2])
        return num / den if den else 0.0
    return float(v)


def _tiff_scale(tif: Any) -> tuple[tuple[_Axis, _Axis], str, dict[str, Any], str]:
    """(y axis, x axis), source, metadata, hint from the tags of a TiffFile."""
    page = tif.pages[0]
    tags = {t.name: t.value for t in page.tags.values()}
    md: dict[str, Any] = {
        "tags": {
            k: v
            for k, v in tags.items()
            if k
            in (
                "XResolution",
                "YResolution",
                "ResolutionUnit",
                "Software",
                "ImageDescription",
                "Make",
                "Model",
            )
            and not isinstance(v, bytes)
        }
    }
    xres = _ratio(tags.get("XResolution", (1, 1)))
    yres = _ratio(tags.get("YResolution", tags.get("XResolution", (1, 1))))
    resunit = int(tags.get("ResolutionUnit", 1) or 1)

    # 1. OME: PhysicalSizeX/Y (their unit defaults to um in the OME schema)
    if tif.is_ome and tif.ome_metadata:
        pix = _ome_pixels(tif.ome_metadata)
        md["ome_pixels"] = pix
        if pix.get("PhysicalSizeX"):
            px = float(pix["PhysicalSizeX"])
            py = float(pix.get("PhysicalSizeY") or px)
            ux = pix.get("PhysicalSizeXUnit", "µm")
            uy = pix.get("PhysicalSizeYUnit", ux if pix.get("PhysicalSizeY") is None else "µm")
            return (_Axis(py, 0.0, uy), _Axis(px, 0.0, ux)), "OME PhysicalSize", md, ""
    # 2. ImageJ: unit in the description, pixel size = 1 / resolution
    if tif.is_imagej:
        ij = dict(tif.imagej_metadata or {})
        md["imagej"] = ij
        unit = str(ij.get("unit", "") or "")
        if unit and xres > 0:
            yunit = str(ij.get("yunit", unit) or unit)
            return (
                (
                    _Axis(1.0 / yres if yres else 1.0 / xres, 0.0, yunit),
                    _Axis(1.0 / xres, 0.0, unit),
                ),
                "ImageJ metadata",
                md,
                "",
            )
    # 3. FEI / Thermo Fisher (SEM, Helios, Velox TIFF export): pixel size in metres
    fei = getattr(tif, "fei_metadata", None) if getattr(tif, "is_fei", False) else None
    if fei:
        for section in ("Scan", "EScan", "IScan"):
            sec = fei.get(section) or {}
            if sec.get("PixelWidth"):
                px = float(sec["PixelWidth"])
                py = float(sec.get("PixelHeight") or px)
                md["fei"] = {section: {"PixelWidth": px, "PixelHeight": py}}
                return (
                    (_Axis(py, 0.0, "m"), _Axis(px, 0.0, "m")),
                    "FEI metadata",
                    md,
                    "",
                )
    # 4. plain resolution tags with a unit
    units = {2: "inch", 3: "cm", 4: "mm", 5: "um"}
    if resunit in units and xres > 0 and yres > 0:
        hint = ""
        if (
            resunit == 2
            and round(xres) in (72, 96, 150, 300, 600)
            and abs(xres - round(xres)) < 1e-6
        ):
            hint = (
                f"{xres:g} dpi is a typical print/screen setting, not a microscope "
                "calibration: check the pixel size"
            )
        return (
            (
                _Axis(1.0 / yres, 0.0, units[resunit]),
                _Axis(1.0 / xres, 0.0, units[resunit]),
            ),
            "TIFF resolution tags",
            md,
            hint,
        )
    hint = (
        "The TIFF has no ImageJ unit, no OME PhysicalSize and no resolution unit "
        "(ResolutionUnit is NONE)."
    )
    return (_Axis(), _Axis()), "none", md, hint


def _ome_pixels(xml: str) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels":
            return dict(el.attrib)
    return {}


def _read_tiff(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> list[_Raw]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(f"{path.name}: the TIFF holds no image")
            series = tif.series[0]
            # the header's size, checked before a byte of pixels is read
            _check_declared(path, "the TIFF header", series.shape, series.dtype, max_bytes)
            data = series.asarray()
            axes_str = series.axes
            (ay, ax), source, md, hint = _tiff_scale(tif)
    except (ImageReadError, MemoryError):
        raise
    except Exception as e:  # TiffFileError, struct.error, ValueError, OSError...
        raise ImageReadError(
            f"{path.name}: cannot be read as a TIFF ({type(e).__name__}: {_one_line(e)}): "
            "is it truncated, or another format under this name?"
        ) from e
    rgb = axes_str.endswith("S") and data.shape[-1] in (3, 4)
    n_spatial_lead = data.ndim - 2 - (1 if rgb else 0)
    axes = [_Axis(navigate=True) for _ in range(n_spatial_lead)] + [ay, ax]
    md["axes"] = axes_str
    msg_hint = hint
    if source == "TIFF resolution tags" and hint:
        md["warning"] = hint
        msg_hint = ""
    return [_Raw(data, path.stem, axes, md, source, rgb=rgb, hint=msg_hint)]


def _read_plain(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> list[_Raw]:
    import imageio.v3 as iio

    try:
        props = iio.improps(path)
        _check_declared(path, "the image header", props.shape, props.dtype, max_bytes)
        data = np.asarray(iio.imread(path))
    except (ImageReadError, MemoryError):
        raise
    except Exception as e:
        raise ImageReadError(
            f"{path.name}: cannot be read as a {path.suffix.lstrip('.').upper()} image "
            f"({type(e).__name__}: {_one_line(e)}): is it truncated, or another format?"
        ) from e
    md: dict[str, Any] = {}
    try:
        meta = iio.immeta(path)
        md = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, tuple))}
    except Exception:  # metadata is optional
        pass
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    hint = (
        "PNG and JPEG files carry no physical pixel size (a dpi value is a print "
        "setting): the pixel size must be given."
    )
    return [_Raw(data, path.stem, [_Axis(), _Axis()], md, "none", rgb=rgb, hint=hint)]


def _read_raw(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> list[_Raw]:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES and not path.is_file():
        what = "a directory" if path.is_dir() else "not found"
        raise (FileNotFoundError if what == "not found" else ImageReadError)(
            f"image file {path}: {what}"
        )
    if suffix in _DM:
        return _read_dm(path, max_bytes)
    if suffix == ".emd":
        return _read_emd(path, max_bytes)
    if suffix in _TIFF:
        return _read_tiff(path, max_bytes)
    if suffix in _PLAIN:
        return _read_plain(path, max_bytes)
    raise ValueError(
        f"{path.name}: not an image file this importer reads ({', '.join(IMAGE_SUFFIXES)})"
    )


def list_signals(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> list[SignalInfo]:
    """The signals of a file (DM/EMD files may hold several; TIFF/PNG one; a
    complex signal is listed as its magnitude and its phase)."""
    return [r.info(i) for i, r in enumerate(_read_raw(Path(path), max_bytes))]


def _choose(raws: list[_Raw], signal: int | str | None, path: Path) -> tuple[int, list[str]]:
    infos = [r.info(i) for i, r in enumerate(raws)]
    listing = "; ".join(i.describe() for i in infos)
    notes: list[str] = []
    if signal is None:
        images = [i for i in infos if i.is_image]
        if not images:
            raise ValueError(f"{path.name}: no 2-D image signal in the file ({listing})")
        idx = images[0].index
        others = [i for i in infos if i.index != idx]
        if others:
            notes.append(
                f"{path.name}: opened signal {infos[idx].describe()}; "
                "the file also holds "
                + "; ".join(i.describe() for i in others)
                + " (choose one with signal=index or title; "
                "1-D plots and spectra are not images)"
            )
        return idx, notes
    if isinstance(signal, (int, np.integer)) and not isinstance(signal, bool):
        idx = int(signal)
        if not 0 <= idx < len(infos):
            raise ValueError(f"{path.name}: no signal {idx}; the file holds {listing}")
    else:
        matches = [i.index for i in infos if i.title == str(signal)]
        if not matches:
            matches = [i.index for i in infos if i.title.lower() == str(signal).lower()]
        if not matches:
            raise ValueError(f"{path.name}: no signal titled {signal!r}; the file holds {listing}")
        idx = matches[0]
    if not infos[idx].is_image:
        raise ValueError(
            f"{path.name}: signal {infos[idx].describe()} is not a 2-D image "
            f"and cannot be placed on the stage; the file holds {listing}"
        )
    return idx, notes


def _pixel_pair(pixel_size_um: float | Sequence[float]) -> tuple[float, float]:
    if np.ndim(pixel_size_um) == 0:
        py = px = float(pixel_size_um)  # type: ignore[arg-type]
    else:
        vals = [float(v) for v in pixel_size_um]  # type: ignore[union-attr]
        if len(vals) != 2:
            raise ValueError(
                f"pixel_size_um must be a number or a (y, x) pair, got {pixel_size_um!r}"
            )
        py, px = vals
    for v in (py, px):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"pixel_size_um must be positive and finite, got {pixel_size_um!r}")
    return py, px


def _build(
    path: Path,
    raws: list[_Raw],
    idx: int,
    *,
    pixel_size_um: float | Sequence[float] | None,
    allow_unscaled: bool,
    sha256: str,
    notes: list[str],
) -> ImportedImage:
    raw = raws[idx]
    ay, ax = raw.axes[-2], raw.axes[-1]
    unit_in_file = ax.units if ax.units == ay.units else f"{ay.units} (y), {ax.units} (x)"
    fy, fx = length_unit_to_um(ay.units), length_unit_to_um(ax.units)
    file_scaled = (
        fy is not None
        and fx is not None
        and all(math.isfinite(v) and v != 0 for v in (ay.scale, ax.scale))
    )
    # first pixel's position in pixels, to keep it when the scale changes
    off_px = tuple(a.offset / a.scale if a.scale else 0.0 for a in (ay, ax))
    title = raw.title
    name = path.stem if len(raws) == 1 or title == path.stem else f"{path.stem} {title}"
    signal_desc = f"#{idx} {title!r}" if len(raws) > 1 else ""
    if pixel_size_um is not None:
        pix = _pixel_pair(pixel_size_um)
        source = "user"
        if file_scaled:
            notes.append(
                f"{path.name}: the given pixel size {pix} um replaces the file's "
                f"({ay.scale * fy:.6g}, {ax.scale * fx:.6g}) um"  # type: ignore[operator]
            )
    elif file_scaled:
        pix = (abs(ay.scale) * fy, abs(ax.scale) * fx)  # type: ignore[operator]
        source = raw.source
        if raw.metadata.get("warning"):
            notes.append(f"{path.name}: {raw.metadata['warning']}")
    else:
        found = ax.units if ax.units == ay.units else unit_in_file
        what = ""
        if fy is not None and fx is not None:  # a length, but a zero/NaN scale
            what = f"an invalid scale ({ay.scale:g}, {ax.scale:g} {found}/pixel)"
        err = MissingScaleError(path, found, hint=raw.hint, signal=signal_desc, what=what)
        if not allow_unscaled:
            raise err
        pix = None
        source = "none"
        notes.append(str(err))
    off = (off_px[0] * (pix[0] if pix else 1.0), off_px[1] * (pix[1] if pix else 1.0))
    data = raw.data
    return ImportedImage(
        data=data,
        pixel_size_um=pix,
        unit_source=source,
        name=name,
        offset_um=(float(off[0]) + 0.0, float(off[1]) + 0.0),
        metadata=raw.metadata,
        signals=[r.info(i) for i, r in enumerate(raws)],
        path=path.resolve(),
        sha256=sha256,
        unit_in_file=unit_in_file,
        signal=idx,
        rgb=raw.rgb,
        notes=notes,
    )


def load_image(
    path: str | Path,
    *,
    pixel_size_um: float | Sequence[float] | None = None,
    signal: int | str | None = None,
    allow_unscaled: bool = False,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> ImportedImage:
    """Read one 2-D image of a file with its pixel size in um.

    - ``pixel_size_um``: um per pixel (a number or a (y, x) pair). Needed when
      the file has no length unit (PNG/JPEG, unitless DM/TIFF, ``1/nm``...);
      when given, it replaces the file's value (``unit_source='user'``).
    - ``signal``: index or title of the signal of a multi-signal file (DM,
      EMD); by default the first 2-D image signal. Choosing a 1-D plot or a
      spectrum raises ValueError.
    - ``allow_unscaled``: return an unscaled image (``pixel_size_um=None``,
      placed at 1 unit per pixel, units 'pixel') instead of raising
      :class:`MissingScaleError`; the error's text is in ``notes``.
    - ``max_bytes``: a file declaring more pixel data is refused before it is
      read (:class:`ImageTooLargeError`; default :data:`MAX_IMAGE_BYTES`).

    A file that cannot be read (truncated, another format under this suffix)
    raises :class:`ImageReadError` naming the file. A complex signal (Velox
    DPC, FFT) is opened as two images, its magnitude and its phase (rad).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    raws = _read_raw(path, max_bytes)
    idx, notes = _choose(raws, signal, path)
    return _build(
        path,
        raws,
        idx,
        pixel_size_um=pixel_size_um,
        allow_unscaled=allow_unscaled,
        sha256=file_sha256(path),
        notes=notes,
    )


def image_layer_data(
    path: str | Path,
    *,
    pixel_size_um: float | Sequence[float] | None = None,
    signal: int | str | None = None,
) -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """napari layer data of one image (raises MissingScaleError like load_image)."""
    return [load_image(path, pixel_size_um=pixel_size_um, signal=signal).layer_data()]


# ------------------------------------------------------------ napari reader


def _is_image_file(path: Any) -> bool:
    p = Path(str(path))
    return p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()


def get_reader(path: str | list[str]) -> Any:
    """npe2 reader: DM3/DM4/EMD/TIFF/PNG/JPEG images, or None."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_is_image_file(p) for p in paths):
        return None
    return read_images


def _notify(message: str, severity: str = "warning") -> None:
    try:
        from napari.utils import notifications
    except ImportError:
        warnings.warn(message, UserWarning, stacklevel=3)
        return
    (notifications.show_warning if severity == "warning" else notifications.show_info)(message)


def read_images(path: str | list[str]) -> list[tuple[np.ndarray, dict[str, Any], str]]:
    """Layers of every 2-D image signal of the files.

    1-D plots and spectra are skipped (with a message). An image without a
    length unit opens unscaled (1 unit = 1 pixel, units 'pixel', name tagged
    '[unscaled]') and a warning says it must be given a scale before aligning.
    """
    paths = path if isinstance(path, list) else [path]
    layers: list[tuple[np.ndarray, dict[str, Any], str]] = []
    for p in map(Path, paths):
        raws = _read_raw(p)
        infos = [r.info(i) for i, r in enumerate(raws)]
        skipped = [i for i in infos if not i.is_image]
        if skipped:
            _notify(
                f"{p.name}: skipped {len(skipped)} signal(s) that are not 2-D images: "
                + "; ".join(i.describe() for i in skipped),
                "info",
            )
        sha = file_sha256(p)
        for info in infos:
            if not info.is_image:
                continue
            img = _build(
                p,
                raws,
                info.index,
                pixel_size_um=None,
                allow_unscaled=True,
                sha256=sha,
                notes=[],
            )
            if not img.scaled:
                _notify(
                    f"{p.name}{f' ({info.title})' if len(raws) > 1 else ''} is "
                    "UNSCALED: the file gives no length unit (unit found: "
                    f"{img.unit_in_file!r}). It is shown at 1 pixel = 1 'pixel' unit, "
                    "not in um; give it a scale before aligning "
                    "it (napari_seccm.io.images.load_image(path, pixel_size_um=...)).",
                    "warning",
                )
            elif img.metadata.get("warning"):
                _notify(f"{p.name}: {img.metadata['warning']}", "warning")
            layers.append(img.layer_data())
    return layers


# ---------------------------------------------------------------- mosaic


def _pixel_matrix(core: Any) -> np.ndarray:
    """2x2 matrix: camera pixel offset (x_px, y_px) -> stage offset (x, y), um."""
    ps = float(core.getPixelSizeUm() or 0.0)
    aff = tuple(float(v) for v in (core.getPixelSizeAffine() or ()))
    if len(aff) >= 6 and any(abs(v) > 0 for v in (aff[0], aff[1], aff[3], aff[4])):
        a, b, _tx, c, d, _ty = aff[:6]
        m = np.array([[a, b], [c, d]])
    elif ps > 0:
        m = np.array([[ps, 0.0], [0.0, ps]])
    else:
        raise RuntimeError("the core has no pixel size calibration for the current camera setup")
    if abs(np.linalg.det(m)) < 1e-18:
        raise RuntimeError(f"the pixel-size affine is singular: {aff}")
    return m


def optical_mosaic(
    core: Any,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    overlap: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Snap a grid of camera images covering an area and stitch them.

    The tiles are laid on the camera's pixel grid (an integer pixel step of
    ``(1 - overlap)`` of a frame), so that, with the pixel-size affine of the
    core (rotation and flips included), every tile lands on whole mosaic
    pixels; each tile is placed by the stage position read back after the move
    (rounded to the nearest pixel) and overlaps are averaged. The stage goes
    back to where it was.

    Returns ``(image float32, affine)``: the 3x3 napari affine mapping mosaic
    (row, col) to stage (y, x) in um, as :func:`~napari_seccm.io.layers.optical_affine`
    does for one snap.
    """
    from .layers import optical_affine

    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    x0, x1 = sorted(float(v) for v in x_range)
    y0, y1 = sorted(float(v) for v in y_range)
    m = _pixel_matrix(core)
    minv = np.linalg.inv(m)
    h, w = int(core.getImageHeight()), int(core.getImageWidth())
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) - centre
    uv = corners @ minv.T  # (x_px, y_px) offsets of the corners
    span_u = float(np.ptp(uv[:, 0]))
    span_v = float(np.ptp(uv[:, 1]))
    step_u = max(1, math.floor(w * (1.0 - overlap)))
    step_v = max(1, math.floor(h * (1.0 - overlap)))
    nu = 1 if span_u <= w else math.ceil((span_u - w) / step_u) + 1
    nv = 1 if span_v <= h else math.ceil((span_v - h) / step_v) + 1

    xy_dev = core.getXYStageDevice()
    start = tuple(core.getXYPosition())
    tiles: list[tuple[int, int, np.ndarray, tuple[float, float]]] = []
    aff = tuple(core.getPixelSizeAffine() or ())
    ps = float(core.getPixelSizeUm() or 0.0)
    try:
        for j in range(nv):
            cols = range(nu) if j % 2 == 0 else range(nu - 1, -1, -1)  # serpentine
            for i in cols:
                off_px = np.array([(i - (nu - 1) / 2) * step_u, (j - (nv - 1) / 2) * step_v])
                target = centre + m @ off_px
                core.setXYPosition(float(target[0]), float(target[1]))
                if xy_dev:
                    core.waitForDevice(xy_dev)
                core.snapImage()
                img = np.asarray(core.getImage())
                pos = tuple(float(v) for v in core.getXYPosition())
                tiles.append((i, j, img, pos))
    finally:
        core.setXYPosition(*start)
        if xy_dev:
            core.waitForDevice(xy_dev)

    # place each tile by its read-back position relative to the first tile
    ref = np.array(tiles[0][3])
    offs = []
    for _i, _j, _img, pos in tiles:
        u, v = minv @ (np.array(pos) - ref)  # (col, row) offset, pixels
        offs.append((round(float(v)), round(float(u))))
    r_min = min(o[0] for o in offs)
    c_min = min(o[1] for o in offs)
    r_max = max(o[0] for o in offs)
    c_max = max(o[1] for o in offs)
    out_shape = (r_max - r_min + h, c_max - c_min + w, *tiles[0][2].shape[2:])
    acc = np.zeros(out_shape, dtype=np.float64)
    cnt = np.zeros(out_shape[:2], dtype=np.int32)
    for (_i, _j, img, _pos), (dr, dc) in zip(tiles, offs, strict=True):
        r, c = dr - r_min, dc - c_min
        acc[r : r + h, c : c + w] += img
        cnt[r : r + h, c : c + w] += 1
    cnt_b = cnt.reshape(cnt.shape + (1,) * (acc.ndim - 2))
    mosaic = np.where(cnt_b > 0, acc / np.maximum(cnt_b, 1), 0.0).astype(np.float32)
    # mosaic (R, C) is first-tile pixel (R + r_min, C + c_min)
    first = optical_affine(ref[0], ref[1], (h, w), ps or 1.0, aff or None)
    shift = np.array([[1.0, 0.0, float(r_min)], [0.0, 1.0, float(c_min)], [0.0, 0.0, 1.0]])
    return mosaic, first @ shift
