"""The automatic first guess of an image's placement (rotation + shift by
masked normalised cross-correlation over all angles)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_seccm.analysis.autoalign import first_guesses
from napari_seccm.analysis.registration import apply
from napari_seccm.simulation.tem import tem_transform

#: a textured world (no repeats), 20 x 20 um at 0.05 um/px, origin (-10, -10) um
_TEXTURE = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal((400, 400)), 4)


def _world(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(_TEXTURE, [(y + 10) / 0.05, (x + 10) / 0.05], order=1)


def _render(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    yx = apply(matrix, np.column_stack([r.ravel(), c.ravel()]))
    return _world(yx[:, 0], yx[:, 1]).reshape(shape)


#: the reference: a 12 x 12 um "map" at 0.2 um/px, in stage coordinates
REF_M = np.array([[0.2, 0, -6.0], [0, 0.2, -6.0], [0, 0, 1]])
REF = _render(REF_M, (60, 60))
CORNERS = np.array([[0, 0], [199, 0], [0, 199], [199, 199]], float)


def _corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(apply(found, CORNERS) - apply(truth, CORNERS), axis=1).max())


@pytest.mark.parametrize("rotation", [-150.0, 30.0, 97.0])
def test_a_unique_pattern_is_placed_within_a_compared_pixel(rotation: float) -> None:
    """A 8 x 8 um image at 0.04 um/px, turned and shifted, contrast inverted
    (as a HAADF image is to a current map), is placed within one compared
    pixel (0.2 um) at every corner, and the match is not ambiguous."""
    truth = tem_transform((200, 200), 40.0, rotation, (1.0, -1.5))
    moving = -_render(truth, (200, 200))
    guesses = first_guesses(REF, REF_M, moving, np.diag([0.04, 0.04, 1.0]), n=3)
    best = guesses[0]
    assert best.pixel_um == pytest.approx(0.2)
    assert _corner_error(best.matrix, truth) < 0.2, best.describe()
    assert best.inverted and not best.mirrored and not best.ambiguous
    # tem_transform turns CCW with y up; on screen (y down) that is clockwise
    assert best.rotation_deg == pytest.approx(-rotation, abs=0.5)
    assert best.score > 0.8 and best.overlap > 0.95
    # the other candidates are distinct (other angles) and worse
    assert len(guesses) == 3
    assert all(g.score < best.score for g in guesses[1:])


def test_a_mirrored_image_is_found_only_when_mirrors_are_tried() -> None:
    truth = tem_transform((200, 200), 40.0, 40.0, (-1.0, 0.5), mirror=True)
    moving = _render(truth, (200, 200))
    # unmirrored, nothing matches: refused rather than placed anywhere
    with pytest.raises(ValueError, match=r"no reliable match: the best correlation is 0\.\d+"):
        first_guesses(REF, REF_M, moving, np.diag([0.04, 0.04, 1.0]), n=1)
    best = first_guesses(REF, REF_M, moving, np.diag([0.04, 0.04, 1.0]), n=1, mirror=True)[0]
    assert best.mirrored and not best.inverted
    assert np.linalg.det(best.matrix[:2, :2]) < 0
    assert _corner_error(best.matrix, truth) < 0.2, best.describe()
    assert best.score > 0.8


def test_stripes_give_the_orientation_and_say_the_shift_is_ambiguous() -> None:
    """The simulated film's [001] stripes repeat: the best guess has the TEM
    image's orientation (modulo 180 deg, within 2 deg) but says that
    placements over a stripe period apart match as well."""
    from napari_seccm.simulation.sample import DOMAIN_001, LLTOFilm
    from napari_seccm.simulation.tem import render_tem_image

    film = LLTOFilm()
    tem, truth = render_tem_image(film, shape=(256, 256), pixel_nm=36.0)
    # a current-like map: low where [001] stripes are, at 0.3 um pitch
    m = np.array([[0.3, 0, -7.5], [0, 0.3, -7.5], [0, 0, 1]])
    r, c = np.mgrid[0:51, 0:51].astype(float)
    yx = apply(m, np.column_stack([r.ravel(), c.ravel()]))
    labels = film.domain_label(yx[:, 1], yx[:, 0]).reshape(r.shape)
    current = np.where(labels == DOMAIN_001, 0.4, 1.0)
    best = first_guesses(current, m, tem, np.diag([0.036, 0.036, 1.0]), n=3)[0]
    true_deg = float(np.degrees(np.arctan2(-truth[0, 1], truth[1, 1])))
    off = (best.rotation_deg - true_deg + 90.0) % 180.0 - 90.0
    assert abs(off) < 2.0, (best.rotation_deg, true_deg)
    assert best.inverted
    assert best.ambiguous and best.uncertainty_um > film.params.stripe_period_um


def test_bad_input_is_refused_by_name() -> None:
    moving = np.zeros((20, 20))
    with pytest.raises(ValueError, match=r"min_overlap.*0"):
        first_guesses(REF, REF_M, moving, np.eye(3), min_overlap=0.0)
    with pytest.raises(ValueError, match=r"angle_step_deg.*45"):
        first_guesses(REF, REF_M, moving, np.eye(3), angle_step_deg=45)
    with pytest.raises(ValueError, match="pixel size"):
        first_guesses(REF, REF_M, moving, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"2-D image.*shape \(2, 20, 20\)"):
        first_guesses(REF, REF_M, np.zeros((2, 20, 20)), np.eye(3))
    with pytest.raises(ValueError, match="fewer than 16 finite"):
        first_guesses(REF, REF_M, np.full((20, 20), np.nan), np.diag([0.2, 0.2, 1.0]))
    # no contrast, noise, or an image far smaller than a compared pixel
    with pytest.raises(ValueError, match="the moving image has no contrast"):
        first_guesses(REF, REF_M, np.full((50, 50), 7.0), np.diag([0.1, 0.1, 1.0]))
    noise = np.random.default_rng(5).standard_normal((200, 200))
    with pytest.raises(ValueError, match="no reliable match"):
        first_guesses(REF, REF_M, noise, np.diag([0.04, 0.04, 1.0]))
    with pytest.raises(ValueError, match=r"0\.00922 um across, less than 8 pixels of 0\.2 um"):
        first_guesses(REF, REF_M, np.ones((512, 512)), np.diag([1.8e-5, 1.8e-5, 1.0]))
