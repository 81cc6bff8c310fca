"""Smoke test: a real napari viewer renders an image on an X server (Xvfb in CI).

pytest-xvfb (in the ``test`` extra) starts Xvfb for the session and sets DISPLAY
before this module is collected. When CI is set, a missing X display is an error,
never a skip: GUI tests must not vanish silently from CI.
"""

from __future__ import annotations

import os
import re
import socket

import numpy as np
import pytest

_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _x_display_available() -> bool:
    """True if DISPLAY names an X server that accepts connections."""
    display = os.environ.get("DISPLAY", "")
    m = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display)
    if m is None:
        return False
    host, num = m["host"], int(m["num"])
    if host not in ("", "unix"):
        try:
            socket.create_connection((host, 6000 + num), timeout=2).close()
        except OSError:
            return False
        return True
    path = f"/tmp/.X11-unix/X{num}"
    # Xvfb listens on the filesystem socket and, on Linux, an abstract one.
    for address in (path, "\0" + path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect(address)
            except OSError:
                continue
            return True
    return False


if not _x_display_available():
    _why = (
        f"no X display reachable (DISPLAY={os.environ.get('DISPLAY')!r}); "
        "pytest-xvfb needs the Xvfb binary: run scripts/setup.sh"
    )
    if _CI:
        pytest.fail(f"CI: GUI tests cannot run: {_why}", pytrace=False)
    pytest.skip(_why, allow_module_level=True)

if not _CI:
    pytest.importorskip("napari")

pytestmark = pytest.mark.gui


@pytest.fixture
def shown_viewer(request, qtbot):
    """A shown napari Viewer, via napari's make_napari_viewer when available."""
    try:
        make_napari_viewer = request.getfixturevalue("make_napari_viewer")
    except pytest.FixtureLookupError:
        import napari

        viewer = napari.Viewer(show=True)
        try:
            yield viewer
        finally:
            viewer.close()
        return
    yield make_napari_viewer(show=True)


def test_viewer_renders_gradient(shown_viewer, qtbot):
    viewer = shown_viewer
    gradient = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (128, 1))
    layer = viewer.add_image(gradient, name="gradient", colormap="gray", contrast_limits=(0.0, 1.0))
    assert viewer.layers[0] is layer
    viewer.reset_view()
    qtbot.wait(50)  # let the canvas draw once

    shot = viewer.screenshot(canvas_only=True, flash=False)

    assert shot.dtype == np.uint8
    assert shot.ndim == 3
    assert shot.shape[2] == 4  # RGBA
    height, width = shot.shape[:2]
    assert 100 <= height <= 4000, shot.shape
    assert 100 <= width <= 4000, shot.shape

    rgb = shot[..., :3].astype(np.int32)
    assert rgb.max() > 200, "screenshot is (nearly) all black: nothing was rendered"
    # The gradient runs left (black) to right (white) across the middle row.
    row = rgb[height // 2].mean(axis=1)
    lit = np.flatnonzero(row > 0)
    assert lit.size > width // 4, "image occupies too little of the canvas"
    left, right = row[lit[: lit.size // 4]], row[lit[-(lit.size // 4) :]]
    assert right.mean() > left.mean() + 100, (left.mean(), right.mean())
    assert np.unique(row[lit]).size > 16, "expected a smooth gradient"
