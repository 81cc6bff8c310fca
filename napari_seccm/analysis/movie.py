"""Map movies of a voltammetric store: the current map as the potential sweeps.

One frame per potential, along each segment in the order it was swept (or
one segment), rendered with matplotlib: the map in stage um with a scale
bar, a colour bar in nA fixed for the whole movie, the potential, segment
and cycle in the title. GIF through Pillow; MP4 (H.264) through
imageio-ffmpeg, an optional dependency (``pip install 'napari-seccm[movie]'``).

Everything is checked before a frame is drawn, and the file is written
through a temporary file moved into place: a refused or failed movie leaves
no file behind.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..acquisition.store import ScanStore

MOVIE_FORMATS = {".gif": "gif", ".mp4": "mp4"}
#: frames per second accepted
FPS_RANGE = (0.1, 60.0)
#: frames per segment accepted
FRAMES_RANGE = (2, 2000)


def movie_format(out: str | Path) -> str:
    """``gif`` or ``mp4`` from the file name; a ValueError otherwise (and for
    MP4 when imageio-ffmpeg is missing)."""
    fmt = MOVIE_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"a movie is written as .gif or .mp4: cannot tell the format from {Path(out).name!r}"
        )
    if fmt == "mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ValueError(
                f"writing MP4 ({Path(out).name}) needs imageio-ffmpeg, which is not installed: "
                "pip install 'napari-seccm[movie]', or write a .gif"
            ) from None
    return fmt


def movie_plan(table: Any, segment: int | None, frames_per_segment: int) -> list[tuple[int, float]]:
    """``(segment, potential V)`` of each frame: evenly spaced along each
    segment in the direction it was swept, segments in program order."""
    lo, hi = FRAMES_RANGE
    if (
        isinstance(frames_per_segment, bool)
        or not isinstance(frames_per_segment, (int, np.integer))
        or not lo <= frames_per_segment <= hi
    ):
        raise ValueError(
            f"frames per segment must be an integer in [{lo}, {hi}], got {frames_per_segment!r}"
        )
    sweeps = [table.sweep(segment)] if segment is not None else list(table.sweeps)
    return [
        (sw.index, float(E))
        for sw in sweeps
        for E in np.linspace(sw.start_V, sw.end_V, int(frames_per_segment))
    ]


def write_movie(
    store: ScanStore | str | Path,
    out: str | Path,
    *,
    segment: int | None = None,
    fps: float = 10.0,
    frames_per_segment: int = 40,
    clim_nA: tuple[float, float] | None = None,
    dpi: int = 100,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a map movie (GIF or MP4, from ``out``'s suffix).

    ``clim_nA``: colour limits in nA (default: the 1st and 99th percentiles
    of every frame). Returns ``path``, ``frames``, ``size_px`` (width,
    height), ``clim_nA`` and ``fps``.
    """
    from .export import _atomic, check_writable
    from .voltammetry import PotentialStack, _open

    fmt = movie_format(out)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps):
        raise ValueError(f"fps must be a number of frames per second, got {fps!r}")
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise ValueError(
            f"fps must lie in [{FPS_RANGE[0]:g}, {FPS_RANGE[1]:g}] frames/s, got {fps:g}"
        )
    if clim_nA is not None:
        c0, c1 = (float(v) for v in clim_nA)
        if not (math.isfinite(c0) and math.isfinite(c1) and c0 < c1):
            raise ValueError(f"colour limits need LO < HI (nA, finite), got {c0:g} {c1:g} nA")
    check_writable(out, overwrite)
    s = _open(store)
    try:
        stack = PotentialStack(s, factor=1e9)
        try:
            plan = movie_plan(stack.table, segment, frames_per_segment)
        except ValueError as e:
            raise ValueError(f"{s.path}: {e}") from None
        maps = [stack.at(k, E) for k, E in plan]
    finally:
        if s is not store:
            s.close()
    allv = np.concatenate([m.ravel() for m in maps])
    allv = allv[np.isfinite(allv)]
    if clim_nA is None:
        c0, c1 = (float(v) for v in np.percentile(allv, [1, 99])) if allv.size else (0.0, 1.0)
        if c1 <= c0:
            c0, c1 = c0 - 0.5, c1 + 0.5
    frames = _render(stack, plan, maps, (c0, c1), dpi, progress)
    with _atomic(out, overwrite) as tmp:
        write = _write_gif if fmt == "gif" else _write_mp4
        n, (h, w) = write(tmp, frames, fps)
    return {
        "path": Path(out),
        "frames": n,
        "size_px": (w, h),
        "clim_nA": (c0, c1),
        "fps": float(fps),
    }


def _render(
    stack: Any,
    plan: list[tuple[int, float]],
    maps: list[np.ndarray],
    clim: tuple[float, float],
    dpi: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[np.ndarray]:
    """RGB frames, one at a time (even width and height, as H.264 needs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .figures import show_map

    g = stack.grid
    fig = Figure(figsize=(6.4, 5.2), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    show_map(ax, maps[0], x0_um=g.x0_um, y0_um=g.y0_um, pitch_um=g.pitch_um, label="current (nA)")
    im = ax.images[0]
    im.set_clim(*clim)
    ax.set_title("E\nframe", fontsize="medium")  # two lines: the layout leaves them room
    fig.tight_layout()
    n = len(plan)
    for i, ((k, E), m) in enumerate(zip(plan, maps, strict=True)):
        im.set_data(np.ma.masked_invalid(m))
        sw = stack.table.sweeps[k]
        way = "rising" if sw.direction > 0 else "falling"
        ax.set_title(
            f"E = {E:.3f} V, segment {k} (cycle {sw.cycle}, {way})\nframe {i + 1}/{n}",
            fontsize="medium",
        )
        canvas.draw()
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        h, w = rgb.shape[:2]
        yield np.ascontiguousarray(rgb[: h - h % 2, : w - w % 2])
        if progress is not None:
            progress(i + 1, n)


def _write_gif(path: Path, frames: Iterator[np.ndarray], fps: float) -> tuple[int, tuple[int, ...]]:
    """Frames to an animated GIF (looping); returns (frames, (height, width))."""
    from PIL import Image

    first = next(frames)
    count = [1]

    def rest() -> Iterator[Any]:
        for f in frames:
            count[0] += 1
            yield Image.fromarray(f)

    Image.fromarray(first).save(
        path,
        format="GIF",
        save_all=True,
        append_images=rest(),
        duration=round(1000.0 / fps),
        loop=0,
    )
    return count[0], first.shape[:2]


def _write_mp4(path: Path, frames: Iterator[np.ndarray], fps: float) -> tuple[int, tuple[int, ...]]:
    """Frames to an H.264 MP4; returns (frames, (height, width))."""
    import imageio_ffmpeg

    first = next(frames)
    h, w = first.shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        macro_block_size=2,
        output_params=["-f", "mp4"],
    )
    writer.send(None)
    n = 0
    try:
        writer.send(first)
        n += 1
        for f in frames:
            writer.send(f)
            n += 1
    finally:
        writer.close()
    return n, (h, w)
