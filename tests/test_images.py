"""Image import with physical scale (DM3/DM4/EMD/TIFF/PNG/JPEG), the simulated
TEM image of the film and its hidden transform, and the optical mosaic."""

from __future__ import annotations

import gc
import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_seccm.io.images import (
    MissingScaleError,
    get_reader,
    length_unit_to_um,
    list_signals,
    load_image,
    optical_mosaic,
    read_images,
)
from napari_seccm.simulation import DOMAIN_001, FilmParameters, LLTOFilm
from napari_seccm.simulation.tem import (
    DEFAULT_PIXEL_NM,
    pixel_to_stage,
    render_tem_image,
    tem_transform,
    write_tem_tiff,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tem"
if not DATA.is_dir():  # CI lays shared/ beside the clone
    DATA = Path("/work/shared/data/tem")
DM3 = DATA / "multi_signal.dm3"
DM4 = DATA / "test-1.dm4"
needs_data = pytest.mark.skipif(
    not (DM3.exists() and DM4.exists()), reason=f"test data not found in {DATA}"
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("unit", "um"),
    [
        ("nm", 1e-3),
        ("um", 1.0),
        ("µm", 1.0),
        ("μm", 1.0),
        ("micron", 1.0),
        ("Microns", 1.0),
        ("\\u00B5m", 1.0),
        ("mm", 1e3),
        ("m", 1e6),
        ("Å", 1e-4),
        ("A", 1e-4),
        ("angstrom", 1e-4),
        ("pm", 1e-6),
        ("cm", 1e4),
        ("inch", 25400.0),
        ("nanometer", 1e-3),
    ],
)
def test_length_units_convert_to_um(unit: str, um: float) -> None:
    assert length_unit_to_um(unit) == pytest.approx(um)


@pytest.mark.parametrize(
    "unit",
    [
        "",
        "pixel",
        "px",
        "<undefined>",
        "1/nm",
        "nm^-1",
        "1 / Å",
        "nm-1",
        "mrad",
        "eV",
        "s",
        "Nm",
        "MM",
    ],
)
def test_non_lengths_are_not_um(unit: str) -> None:
    assert length_unit_to_um(unit) is None


# --------------------------------------------------------------- DM files


@needs_data
def test_dm3_pixel_size_comes_from_the_file() -> None:
    from rsciio.digitalmicrograph import file_reader

    img = load_image(DM3)
    assert img.data.shape == (512, 512) and img.data.dtype == np.uint16
    assert img.scaled and img.unit_source == "DM file" and img.unit_in_file == "nm"
    # the file says 0.01775... nm per pixel: 1.775e-5 um
    assert img.pixel_size_um == pytest.approx((1.775e-5, 1.775e-5), rel=1e-3)
    scale_nm = next(s for s in file_reader(str(DM3)) if s["data"].ndim == 2)["axes"][1]["scale"]
    assert img.pixel_size_um[1] == pytest.approx(scale_nm * 1e-3, rel=1e-12)
    kw = img.layer_kwargs()
    assert kw["scale"] == pytest.approx(img.pixel_size_um)
    assert kw["units"] == ("micrometer", "micrometer")
    md = kw["metadata"]["seccm_image"]
    assert md["path"] == str(DM3.resolve()) and md["sha256"] == _sha(DM3)
    assert md["pixel_size_um"] == pytest.approx([1.775e-5, 1.775e-5], rel=1e-3)
    assert md["unit_in_file"] == "nm" and md["signal"] == 0 and md["signal_title"] == "HAADF"


@needs_data
def test_dm_pixel_size_follows_what_the_file_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing of the DM3 is hard-coded: another scale in the file, another size."""
    import rsciio.digitalmicrograph as dm

    real = dm.file_reader

    def fake(path: str, **kw: Any) -> list[dict]:
        sigs = real(path, **kw)
        for ax in sigs[0]["axes"]:
            ax["scale"], ax["units"], ax["offset"] = 0.5, "µm", 2.0
        return sigs

    monkeypatch.setattr(dm, "file_reader", fake)
    img = load_image(DM3)
    assert img.pixel_size_um == (0.5, 0.5) and img.unit_in_file == "µm"
    assert img.offset_um == (2.0, 2.0)
    assert img.layer_kwargs()["translate"] == (2.0, 2.0)


@needs_data
def test_dm_length_unit_with_zero_scale_is_not_a_scale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rsciio.digitalmicrograph as dm

    real = dm.file_reader

    def fake(path: str, **kw: Any) -> list[dict]:
        sigs = real(path, **kw)
        for ax in sigs[0]["axes"]:
            ax["scale"] = 0.0
        return sigs

    monkeypatch.setattr(dm, "file_reader", fake)
    with pytest.raises(MissingScaleError, match=r"invalid scale \(0, 0 nm/pixel\)"):
        load_image(DM3)


@needs_data
def test_dm3_signal_choice() -> None:
    infos = list_signals(DM3)
    assert [(i.title, i.kind) for i in infos] == [("HAADF", "image"), ("Plot", "1-D")]
    default = load_image(DM3)
    assert default.signal == 0 and default.signal_title == "HAADF"
    assert any("'Plot'" in n and "1-D" in n for n in default.notes)  # the plot is reported
    for choice in (0, "HAADF", "haadf"):
        assert load_image(DM3, signal=choice).signal_title == "HAADF"
    for choice in (1, "Plot"):
        with pytest.raises(ValueError, match=r"'Plot' \(1-D.*not a 2-D image"):
            load_image(DM3, signal=choice)
    with pytest.raises(ValueError, match=r"no signal titled 'EDS'.*HAADF"):
        load_image(DM3, signal="EDS")
    with pytest.raises(ValueError, match="no signal 5"):
        load_image(DM3, signal=5)


@needs_data
def test_dm4_without_unit_needs_a_pixel_size() -> None:
    with pytest.raises(MissingScaleError) as exc:
        load_image(DM4)
    assert isinstance(exc.value, ValueError)
    msg = str(exc.value)
    assert "test-1.dm4" in msg and "no length unit" in msg
    assert "unit in the file: ''" in msg and "pixel_size_um" in msg
    assert exc.value.unit == ""

    img = load_image(DM4, pixel_size_um=0.002)
    assert img.data.shape == (2, 2) and img.data.dtype == np.int16
    assert img.pixel_size_um == (0.002, 0.002) and img.unit_source == "user"
    assert img.layer_kwargs()["units"] == ("micrometer", "micrometer")
    assert load_image(DM4, pixel_size_um=(0.003, 0.002)).pixel_size_um == (0.003, 0.002)
    for bad in (0, -1.0, float("nan"), (1.0, 2.0, 3.0)):
        with pytest.raises(ValueError, match="pixel_size_um"):
            load_image(DM4, pixel_size_um=bad)

    unscaled = load_image(DM4, allow_unscaled=True)
    assert unscaled.pixel_size_um is None and not unscaled.scaled
    kw = unscaled.layer_kwargs()
    assert kw["units"] == ("pixel", "pixel") and kw["scale"] == (1.0, 1.0)
    assert "[unscaled]" in kw["name"] and kw["metadata"]["seccm_image"]["pixel_size_um"] is None


def test_napari_reader_claims_only_images(tmp_path: Path) -> None:
    tif = tmp_path / "a.TIF"
    tifffile.imwrite(tif, np.zeros((4, 4), np.uint8))
    assert get_reader(str(tif)) is read_images
    assert get_reader([str(tif), str(tif)]) is read_images
    assert get_reader(str(tmp_path / "missing.tif")) is None
    (tmp_path / "x.seccm.zarr").mkdir()
    assert get_reader(str(tmp_path / "x.seccm.zarr")) is None
    (tmp_path / "notes.txt").write_text("hi")
    assert get_reader([str(tif), str(tmp_path / "notes.txt")]) is None


@needs_data
def test_reader_function_warns_and_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """read_images: DM4 unscaled with a warning; the DM3's 1-D plot skipped, said."""
    import napari_seccm.io.images as images

    said: list[tuple[str, str]] = []
    monkeypatch.setattr(images, "_notify", lambda m, s="warning": said.append((s, m)))
    (layer,) = read_images(str(DM4))
    assert layer[1]["units"] == ("pixel", "pixel")
    assert said and said[0][0] == "warning" and "UNSCALED" in said[0][1]
    said.clear()
    (layer,) = read_images([str(DM3)])
    assert layer[1]["units"] == ("micrometer", "micrometer")
    assert said == [("info", said[0][1])] and "'Plot'" in said[0][1] and "skipped" in said[0][1]


# ------------------------------------------------------------------- TIFF


def _img(shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    return np.arange(shape[0] * shape[1], dtype=np.uint16).reshape(shape)


def test_tiff_resolution_tags_centimetre(tmp_path: Path) -> None:
    p = tmp_path / "res_cm.tif"
    # 0.5 um per pixel in x, 0.25 um in y: 20000 and 40000 pixels per cm
    tifffile.imwrite(p, _img(), resolution=(1e4 / 0.5, 1e4 / 0.25), resolutionunit="CENTIMETER")
    img = load_image(p)
    assert img.pixel_size_um == pytest.approx((0.25, 0.5))
    assert img.unit_source == "TIFF resolution tags" and img.unit_in_file == "cm"
    np.testing.assert_array_equal(img.data, _img())


def test_tiff_resolution_in_inches_flags_screen_dpi(tmp_path: Path) -> None:
    p = tmp_path / "dpi.tif"
    tifffile.imwrite(p, _img(), resolution=(72, 72), resolutionunit="INCH")
    img = load_image(p)
    assert img.pixel_size_um == pytest.approx((25400 / 72, 25400 / 72))
    assert any("72 dpi" in n for n in img.notes)


@pytest.mark.parametrize(
    ("unit", "um"), [("nm", 1e-3), ("micron", 1.0), ("\\u00B5m", 1.0), ("mm", 1e3)]
)
def test_tiff_imagej_unit(tmp_path: Path, unit: str, um: float) -> None:
    p = tmp_path / "ij.tif"
    tifffile.imwrite(
        p,
        _img(),
        imagej=True,
        resolution=(1 / 18.0, 1 / 18.0),
        metadata={"unit": unit, "spacing": 3.0},
    )
    img = load_image(p)
    assert img.pixel_size_um == pytest.approx((18.0 * um, 18.0 * um))
    assert img.unit_source == "ImageJ metadata"


def test_tiff_ome_physical_size(tmp_path: Path) -> None:
    p = tmp_path / "img.ome.tif"
    tifffile.imwrite(
        p,
        _img(),
        metadata={
            "PhysicalSizeX": 0.5,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 0.25,
            "PhysicalSizeYUnit": "Å",
        },
    )
    img = load_image(p)
    assert img.pixel_size_um == pytest.approx((0.25e-4, 0.5e-3))
    assert img.unit_source == "OME PhysicalSize"
    # without a unit attribute, OME's default unit is the micrometre
    q = tmp_path / "default.ome.tif"
    tifffile.imwrite(q, _img(), metadata={"PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3})
    assert load_image(q).pixel_size_um == pytest.approx((0.3, 0.3))


def test_tiff_fei_metadata(tmp_path: Path) -> None:
    """FEI/Thermo TIFFs (SEM, Helios, Velox export) give the pixel size in metres."""
    p = tmp_path / "fei.tif"
    ini = "[User]\nDate=01/01/2026\n[Scan]\nPixelWidth=2.5e-09\nPixelHeight=5e-09\n"
    tifffile.imwrite(p, _img(), extratags=[(34682, "s", 0, ini, True)])
    img = load_image(p)
    assert img.pixel_size_um == pytest.approx((0.005, 0.0025))
    assert img.unit_source == "FEI metadata"


def test_tiff_without_unit_raises(tmp_path: Path) -> None:
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, _img())  # resolution 1/1, ResolutionUnit NONE
    with pytest.raises(MissingScaleError, match=r"plain\.tif.*no length unit.*ResolutionUnit"):
        load_image(p)
    assert load_image(p, pixel_size_um=0.1).pixel_size_um == (0.1, 0.1)


def test_diffraction_unit_is_refused_as_a_length(tmp_path: Path) -> None:
    p = tmp_path / "diffraction.tif"
    tifffile.imwrite(p, _img(), imagej=True, resolution=(50.0, 50.0), metadata={"unit": "1/nm"})
    with pytest.raises(MissingScaleError) as exc:
        load_image(p)
    assert exc.value.unit == "1/nm"
    assert "'1/nm'" in str(exc.value) and "reciprocal" in str(exc.value)
    img = load_image(p, allow_unscaled=True)
    assert img.layer_kwargs()["units"] == ("pixel", "pixel")


def test_emd_round_trip_and_reciprocal_unit(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    from rsciio.emd import file_writer

    def write(path: Path, unit: str) -> None:
        axes = [
            {
                "name": n,
                "size": s,
                "scale": sc,
                "offset": 0.0,
                "units": unit,
                "navigate": False,
            }
            for n, s, sc in (("y", 6, 0.4), ("x", 8, 0.2))
        ]
        file_writer(
            str(path),
            {
                "data": _img(),
                "axes": axes,
                "original_metadata": {},
                "metadata": {"General": {"title": "HAADF"}, "Signal": {}},
            },
        )

    write(tmp_path / "stem.emd", "nm")
    img = load_image(tmp_path / "stem.emd")
    assert img.pixel_size_um == pytest.approx((0.4e-3, 0.2e-3)) and img.unit_source == "EMD file"
    write(tmp_path / "dp.emd", "1/nm")
    with pytest.raises(MissingScaleError, match=r"reciprocal-space unit \('1 ?/ ?nm'"):
        load_image(tmp_path / "dp.emd")


# -------------------------------------------------------------- PNG / JPEG


def test_png_and_jpeg_need_a_user_pixel_size(tmp_path: Path) -> None:
    import imageio.v3 as iio

    gray = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    rgb = np.stack([gray, gray[::-1], gray[:, ::-1]], axis=-1)
    iio.imwrite(tmp_path / "g.png", gray)
    iio.imwrite(tmp_path / "c.png", rgb)
    iio.imwrite(tmp_path / "c.jpg", rgb)
    with pytest.raises(MissingScaleError, match=r"g\.png.*PNG and JPEG"):
        load_image(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png", pixel_size_um=0.25)
    assert g.pixel_size_um == (0.25, 0.25) and g.unit_source == "user" and not g.rgb
    np.testing.assert_array_equal(g.data, gray)
    c = load_image(tmp_path / "c.png", pixel_size_um=(0.5, 0.25))
    kw = c.layer_kwargs()
    assert c.rgb and kw["rgb"] and kw["scale"] == (0.5, 0.25) and "colormap" not in kw
    j = load_image(tmp_path / "c.jpg", pixel_size_um=1.5)
    assert j.data.shape == (6, 8, 3) and j.pixel_size_um == (1.5, 1.5)


# ------------------------------------------------------- simulated TEM image


def test_tem_hidden_transform_matches_the_film() -> None:
    film = LLTOFilm(FilmParameters())
    image, transform = render_tem_image(film)
    assert image.dtype == np.uint16 and image.shape == (512, 512)
    # a similarity: 18 nm per pixel, rotated 23 deg, ~9 um field of view
    s = DEFAULT_PIXEL_NM * 1e-3
    assert np.linalg.det(transform[:2, :2]) == pytest.approx(s * s)
    assert transform[:2, :2] @ transform[:2, :2].T == pytest.approx(s * s * np.eye(2))
    fov = 512 * s
    assert 8.0 <= fov <= 10.0 and fov / film.params.stripe_period_um >= 4
    # +col points 23 deg CCW from +x: d(x, y)/dcol = s (cos, sin)
    assert math.degrees(math.atan2(transform[0, 1], transform[1, 1])) == pytest.approx(23.0)

    from skimage.filters import threshold_otsu

    bright = image > threshold_otsu(image)
    rows, cols = np.mgrid[0:512, 0:512]
    x, y = pixel_to_stage(transform, rows, cols)
    truth = film.domain_label(x.ravel(), y.ravel()).reshape(x.shape) == DOMAIN_001
    assert 0.2 < truth.mean() < 0.5  # both domains in view
    assert (bright == truth).mean() > 0.95
    # the same truth through the homogeneous matrix
    yx = transform @ np.array([100.0, 300.0, 1.0])
    assert (yx[1], yx[0]) == pytest.approx(pixel_to_stage(transform, 100, 300))


def test_tem_mirror_and_other_frames() -> None:
    film = LLTOFilm(FilmParameters(stripe_angle_deg=-35.0, stripe_period_um=1.5))
    image, t = render_tem_image(
        film,
        shape=(200, 300),
        pixel_nm=25.0,
        rotation_deg=-140.0,
        center_um=(-3.0, 4.0),
        mirror=True,
        seed=5,
    )
    assert image.shape == (200, 300) and np.linalg.det(t[:2, :2]) < 0
    centre = pixel_to_stage(t, (200 - 1) / 2, (300 - 1) / 2)
    assert centre == pytest.approx((-3.0, 4.0))
    from skimage.filters import threshold_otsu

    rows, cols = np.mgrid[0:200, 0:300]
    x, y = pixel_to_stage(t, rows, cols)
    truth = film.domain_label(x.ravel(), y.ravel()).reshape(x.shape) == DOMAIN_001
    assert ((image > threshold_otsu(image)) == truth).mean() > 0.95
    np.testing.assert_allclose(t, tem_transform((200, 300), 25.0, -140.0, (-3.0, 4.0), True))


def test_write_tem_tiff_imports_with_its_pixel_size(tmp_path: Path) -> None:
    film = LLTOFilm(FilmParameters())
    path = tmp_path / "tem.tif"
    transform = write_tem_tiff(path, film, pixel_nm=12.5, shape=(128, 160), seed=2)
    img = load_image(path)
    assert img.pixel_size_um == pytest.approx((0.0125, 0.0125))
    assert img.unit_in_file == "nm" and img.unit_source == "ImageJ metadata"
    expected, t2 = render_tem_image(film, pixel_nm=12.5, shape=(128, 160), seed=2)
    np.testing.assert_array_equal(img.data, expected)
    np.testing.assert_allclose(transform, t2)


def test_tem_sample_data_has_scale_but_not_the_hidden_pose(tmp_path: Path) -> None:
    from napari_seccm.io.sample_data import simulated_tem_image

    ((data, kw, kind),) = simulated_tem_image(tmp_path)
    assert kind == "image" and data.shape == (512, 512)
    assert kw["scale"] == pytest.approx((0.018, 0.018))
    assert kw["units"] == ("micrometer", "micrometer")
    assert kw["translate"] == (0.0, 0.0)
    assert not {"affine", "rotate", "shear"} & kw.keys()
    md = kw["metadata"]["seccm_image"]
    assert md["sha256"] == _sha(Path(md["path"]))


# ----------------------------------------------------------------- mosaic


@pytest.fixture
def sim_core() -> Iterator[Any]:
    from napari_seccm.configs import load_core

    core = load_core()
    yield core
    core.unloadAllDevices()
    del core
    gc.collect()


def test_optical_mosaic_places_tiles_in_stage_coordinates(sim_core: Any) -> None:
    from napari_seccm.io.layers import optical_affine

    core = sim_core
    ps = core.getPixelSizeUm()
    h, w = core.getImageHeight(), core.getImageWidth()
    assert (h, w, ps) == (512, 512, pytest.approx(0.1))
    core.setXYPosition(3.0, -4.0)
    core.waitForSystem()
    mosaic, affine = optical_mosaic(core, (-45.0, 45.0), (-40.0, 40.0), overlap=0.1)
    assert tuple(core.getXYPosition()) == pytest.approx((3.0, -4.0))  # back where it was
    step = math.floor(512 * 0.9)
    assert mosaic.shape == (512 + step, 512 + step)  # 2 x 2 tiles
    # the mosaic covers the area asked for
    corners = affine @ np.array([[0, 0, 1], [mosaic.shape[0] - 1, mosaic.shape[1] - 1, 1]]).T
    assert corners[1, 0] <= -45 + ps and corners[1, 1] >= 45 - ps
    assert corners[0, 0] <= -40 + ps and corners[0, 1] >= 40 - ps

    # one snap with the pad edge (x = -20 um) and [001] stripes in view
    core.setXYPosition(-20.0, 10.0)
    core.waitForSystem()
    core.snapImage()
    snap = np.asarray(core.getImage(), dtype=float)
    snap_affine = optical_affine(-20.0, 10.0, snap.shape, ps, tuple(core.getPixelSizeAffine()))

    # (a) the pad edge is at the same world x in both (and where the film has it)
    def edge_x(img: np.ndarray, aff: np.ndarray, row: int) -> float:
        prof = ndimage.uniform_filter1d(img[row - 10 : row + 10].mean(axis=0), 3)
        mid = (np.median(prof[:50]) + np.median(prof[-50:])) / 2  # bright pad | film
        col = int(np.argmax(prof < mid))  # first column past the pad
        return float((aff @ [row, col - 0.5, 1])[1])

    pad = core.getProperty("SECCM", "PadEdgeX_um")
    x_snap = edge_x(snap, snap_affine, 450)
    row_m = round((np.linalg.inv(affine) @ (snap_affine @ [450, 0, 1]))[0])
    x_mos = edge_x(mosaic, affine, row_m)
    assert x_snap == pytest.approx(pad, abs=0.15)
    assert x_mos == pytest.approx(x_snap, abs=0.15)

    # (b) a 2-D patch (pad edge + stripes) matches best with no shift
    def hp(a: np.ndarray) -> np.ndarray:
        return a - ndimage.gaussian_filter(a, 8)

    r0, c0, ph, pw = 300, 200, 200, 220  # below the tip: free of the pipette's shadow
    patch = hp(snap)[r0 : r0 + ph, c0 : c0 + pw]
    target = np.linalg.inv(affine) @ snap_affine @ [r0, c0, 1]
    rr, cc = (round(v) for v in target[:2])
    assert target[:2] == pytest.approx((rr, cc), abs=1e-6)  # same pixel grid
    mh = hp(mosaic.astype(float))
    a = (patch - patch.mean()).ravel()
    scores = {}
    for dr in range(-4, 5):
        for dc in range(-4, 5):
            m = mh[rr + dr : rr + dr + ph, cc + dc : cc + dc + pw]
            b = (m - m.mean()).ravel()
            scores[dr, dc] = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert max(scores, key=scores.get) == (0, 0)
    assert scores[0, 0] > 0.7


class _FakeCore:
    """A camera on a rotated, flipped pixel grid looking at bright spots."""

    def __init__(self, spots: np.ndarray, shape: tuple[int, int], mm_affine: tuple) -> None:
        self.spots, self.shape, self.aff = spots, shape, mm_affine
        self.xy = (0.0, 0.0)
        self.moves: list[tuple[float, float]] = []
        self._img: np.ndarray | None = None

    def getPixelSizeUm(self) -> float:
        return math.hypot(self.aff[0], self.aff[3])

    def getPixelSizeAffine(self) -> tuple:
        return self.aff

    def getImageHeight(self) -> int:
        return self.shape[0]

    def getImageWidth(self) -> int:
        return self.shape[1]

    def getXYStageDevice(self) -> str:
        return "XY"

    def waitForDevice(self, _label: str) -> None:
        pass

    def getXYPosition(self) -> tuple[float, float]:
        return self.xy

    def setXYPosition(self, x: float, y: float) -> None:
        self.xy = (float(x), float(y))
        self.moves.append(self.xy)

    def snapImage(self) -> None:
        h, w = self.shape
        a, b, _, c, d, _ = self.aff
        r, col = np.mgrid[0:h, 0:w].astype(float)
        u, v = col - (w - 1) / 2, r - (h - 1) / 2
        x = self.xy[0] + a * u + b * v
        y = self.xy[1] + c * u + d * v
        img = np.zeros((h, w))
        for sx, sy in self.spots:
            img += 1000 * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / (2 * 0.4**2))
        self._img = img.astype(np.uint16)

    def getImage(self) -> np.ndarray:
        assert self._img is not None
        return self._img


@pytest.mark.parametrize(("angle", "flip"), [(30.0, False), (-50.0, True)])
def test_optical_mosaic_with_a_rotated_flipped_camera(angle: float, flip: bool) -> None:
    th, s = math.radians(angle), 0.2
    # pixel (x_px, y_px) -> stage: flip y_px (or not), then rotate
    f = -1.0 if flip else 1.0
    aff = (
        s * math.cos(th),
        -f * s * math.sin(th),
        0.0,
        s * math.sin(th),
        f * s * math.cos(th),
        0.0,
    )
    rng = np.random.default_rng(0)
    # isolated spots (>= 3 um apart): a 4 um grid, jittered
    gx, gy = np.meshgrid(np.arange(-12.0, 12.1, 4.0), np.arange(-12.0, 12.1, 4.0))
    spots = np.stack([gx.ravel(), gy.ravel()], axis=1) + rng.uniform(-0.5, 0.5, (gx.size, 2))
    core = _FakeCore(spots, (40, 56), aff)
    core.xy = (1.0, 2.0)
    mosaic, affine = optical_mosaic(core, (-10.0, 10.0), (-8.0, 8.0), overlap=0.2)
    assert core.xy == (1.0, 2.0) and len(core.moves) > 4
    inv = np.linalg.inv(affine)
    found = 0
    for sx, sy in spots:
        r, c = (inv @ [sy, sx, 1])[:2]
        if not (6 <= r < mosaic.shape[0] - 6 and 6 <= c < mosaic.shape[1] - 6):
            continue
        ri, ci = round(r), round(c)
        win = mosaic[ri - 6 : ri + 7, ci - 6 : ci + 7].astype(float)  # +-3 sigma
        cy, cx = ndimage.center_of_mass(win)
        yx = affine @ [ri - 6 + cy, ci - 6 + cx, 1]
        assert win.max() > 500
        assert (yx[1], yx[0]) == pytest.approx((sx, sy), abs=0.05)  # 1/4 pixel
        found += 1
    assert found >= 15
    # the area asked for lies inside the mosaic
    for x, y in ((-10, -8), (10, -8), (-10, 8), (10, 8)):
        r, c = (inv @ [y, x, 1])[:2]
        assert -0.5 <= r <= mosaic.shape[0] - 0.5 and -0.5 <= c <= mosaic.shape[1] - 0.5


def test_optical_mosaic_small_area_is_one_snap(sim_core: Any) -> None:
    mosaic, affine = optical_mosaic(sim_core, (1.0, 5.0), (-2.0, 2.0))
    assert mosaic.shape == (512, 512)
    from napari_seccm.io.layers import optical_affine

    np.testing.assert_allclose(affine, optical_affine(3.0, 0.0, (512, 512), 0.1))


# ---------------------------------------------------------------- napari


@pytest.fixture
def viewer(make_napari_viewer: Any) -> Any:
    pytest.importorskip("napari")
    return make_napari_viewer()


def _warnings_since(n: int) -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        str(r.message)
        for r in notification_manager.records[n:]
        if r.severity == NotificationSeverity.WARNING
    ]


@pytest.mark.gui
@needs_data
def test_viewer_opens_dm3_with_scale(viewer: Any) -> None:
    layers = viewer.open(str(DM3), plugin="napari-seccm")
    assert len(layers) == 1  # the HAADF image; the 1-D plot is skipped
    (layer,) = layers
    assert layer.name == "multi_signal HAADF"
    assert tuple(layer.scale) == pytest.approx((1.775e-5, 1.775e-5), rel=1e-3)
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["seccm_image"]["sha256"] == _sha(DM3)


@pytest.mark.gui
@needs_data
def test_viewer_opens_dm4_unscaled_with_a_warning(viewer: Any) -> None:
    from napari.utils.notifications import notification_manager

    n = len(notification_manager.records)
    (layer,) = viewer.open(str(DM4), plugin="napari-seccm")
    assert tuple(layer.scale) == (1.0, 1.0)
    assert [str(u) for u in layer.units] == ["pixel", "pixel"]
    assert "micrometer" not in [str(u) for u in layer.units]
    assert "[unscaled]" in layer.name
    warned = _warnings_since(n)
    assert any("test-1.dm4" in m and "UNSCALED" in m and "before aligning" in m for m in warned)


@pytest.mark.gui
def test_viewer_opens_tiff_and_the_tem_sample(viewer: Any, tmp_path: Path) -> None:
    p = tmp_path / "scaled.tif"
    tifffile.imwrite(
        p,
        _img((20, 30)),
        imagej=True,
        resolution=(1 / 5.0, 1 / 5.0),
        metadata={"unit": "nm"},
    )
    (layer,) = viewer.open(str(p), plugin="napari-seccm")
    assert tuple(layer.scale) == pytest.approx((0.005, 0.005))
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    (tem,) = viewer.open_sample("napari-seccm", "llto_tem")
    assert tuple(tem.scale) == pytest.approx((0.018, 0.018))
    np.testing.assert_allclose(tem.affine.affine_matrix, np.eye(3))  # pose not given away
