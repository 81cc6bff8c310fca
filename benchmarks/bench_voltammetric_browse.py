"""Browsing a voltammetric map by potential in napari: slider updates per second.

Writes a 100 x 100-point store with a 2048-sample CV at every point
(0 -> 1 -> 0 V, two segments; 160 MiB of traces) directly with the store
API, opens it in a real napari viewer (shown, under Xvfb when there is no
display) and moves the potential slider: sequentially (as a drag or the
play button does) and to random (segment, potential) steps. Each update is
timed until napari has sliced the layer and the canvas has drawn it (the
vispy canvas's draw event), one draw per update.

Also timed: opening the store, the first frame (it reads the traces), a
frame's computation alone, and, for comparison, a frame read from the
store without the stack's cache (two sample columns of every point: every
trace chunk is read).

Target: >= 20 slider updates per second. Prints one line per figure.

Run: .venv/bin/python benchmarks/bench_voltammetric_browse.py [--side 100] [--samples 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    """The machine and its load (as bench_iv_fit prints it), and napari's version."""
    import napari
    from bench_iv_fit import machine_info

    return f"{machine_info()}, napari {napari.__version__}"


def write_store(path: Path, side: int, n_samples: int) -> Path:
    """A side x side CV map written with the store API (no simulation)."""
    from napari_seccm.acquisition.plan import (
        CyclicVoltammetry,
        PotentiostatSettings,
        RectangleArea,
        ScanPlan,
    )
    from napari_seccm.acquisition.store import OK, PointRecord, ScanStore

    fs = 5000.0
    pitch = 0.3
    plan = ScanPlan(
        area=RectangleArea(width_um=side * pitch, height_um=side * pitch),
        pitch_um=pitch,
        measurement=CyclicVoltammetry(
            start_V=0.0, vertex_V=1.0, scan_rate_V_per_s=2.0 / (n_samples / fs)
        ),
        potentiostat=PotentiostatSettings(sample_rate_Hz=fs),
    )
    assert plan.samples_per_point() == n_samples, plan.samples_per_point()
    st = ScanStore.create(path, plan)
    E = plan.program().sample(fs)
    direction = np.sign(np.gradient(E))
    pts = st.points()
    rng = np.random.default_rng(0)
    batch = []
    for i in range(st.n_points):
        x, y = pts["x_um"][i], pts["y_um"][i]
        g = (1.0 + 0.4 * np.cos(2 * np.pi * (x * 0.5 + y * 0.87) / 2.0)) * 1e-9  # stripes
        cur = g * E + 0.2e-9 * direction + rng.normal(0, 5e-12, E.size)
        batch.append(PointRecord(i, OK, float(cur.mean()), 0.0, x, y, 0.0, 0.0, cur, E))
        if len(batch) == 1000:
            st.write_points(batch)
            batch = []
    st.write_points(batch)
    st.update_meta(status="complete")
    st.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=100)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--updates", type=int, default=300)
    args = ap.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_seccm.analysis.voltammetry import PotentialStack

    print(machine())
    tmp = Path(tempfile.mkdtemp(prefix="seccm-bench-volt-"))
    try:
        path = tmp / "cv.seccm.zarr"
        t0 = time.perf_counter()
        write_store(path, args.side, args.samples)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        print(
            f"store: {args.side}x{args.side} points x {args.samples} samples, {size:.0f} MiB, "
            f"written in {time.perf_counter() - t0:.1f} s"
        )

        # the computation alone, no napari
        stack = PotentialStack(path, factor=1e9)
        n_seg, n_e = stack.shape[:2]
        t0 = time.perf_counter()
        stack.frame(0, n_e // 2)
        cold = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        picks = [(int(rng.integers(n_seg)), int(rng.integers(n_e))) for _ in range(500)]
        t0 = time.perf_counter()
        for k, j in picks:
            stack.frame(k, j)
        warm = (time.perf_counter() - t0) / len(picks)
        arr = stack.store.array("traces/current_A")
        t0 = time.perf_counter()
        reps = 5
        for k, j in picks[:reps]:
            cols, _w = stack.table.grid_weights(k, j) or (np.array([0]), None)
            arr.get_orthogonal_selection((slice(None), cols))
        uncached = (time.perf_counter() - t0) / reps
        print(
            f"frame computation: first (reads the traces) {cold * 1e3:.0f} ms, then "
            f"{warm * 1e3:.2f} ms/frame ({n_seg} segments x {n_e} potential steps); "
            f"without the cache, reading two columns of every point from the store: "
            f"{uncached * 1e3:.0f} ms/frame"
        )
        stack.store.close()
        del stack

        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1280, 800)
        app = QApplication.instance()
        app.processEvents()
        t0 = time.perf_counter()
        viewer.open(str(path), plugin="napari-seccm")
        app.processEvents()
        t_open = time.perf_counter() - t0
        for other in viewer.layers[:-1]:
            other.visible = False
        canvas = viewer.window._qt_viewer.canvas._scene_canvas
        draws = [0]
        canvas.events.draw.connect(lambda _e: draws.__setitem__(0, draws[0] + 1))

        def update(k: int, j: int) -> None:
            if tuple(viewer.dims.current_step[:2]) == (k, j):
                j = (j + 1) % n_e  # a move, not the step already shown
            n = draws[0]
            viewer.dims.current_step = (k, j, 0, 0)
            deadline = time.perf_counter() + 5.0
            while draws[0] == n and time.perf_counter() < deadline:
                app.processEvents()
            assert draws[0] > n, "the canvas did not redraw"

        t0 = time.perf_counter()
        update(1, 0)  # cold: the first frame reads the traces
        t_first = time.perf_counter() - t0
        print(
            f"napari: open {t_open:.2f} s (layers, contrast limits, the first frame: it reads "
            f"the traces into the cache), first slider move {t_first * 1e3:.0f} ms"
        )
        sequences = (
            ("sequential", [(0, j % n_e) for j in range(args.updates)]),
            (
                "random",
                [(int(rng.integers(n_seg)), int(rng.integers(n_e))) for _ in range(args.updates)],
            ),
        )

        def run(label: str) -> dict[str, float]:
            results = {}
            for name, seq in sequences:
                times = []
                for k, j in seq:
                    t = time.perf_counter()
                    update(k, j)
                    times.append(time.perf_counter() - t)
                t_ms = np.array(times) * 1e3
                results[name] = len(seq) / (t_ms.sum() / 1e3)
                print(
                    f"{label}, {name:10s} slider updates: {results[name]:.0f} updates/s "
                    f"(median {np.median(t_ms):.1f} ms, p95 {np.percentile(t_ms, 95):.1f} ms, "
                    f"max {t_ms.max():.1f} ms per update until drawn; {len(seq)} updates)"
                )
            return results

        results = run("store")
        # napari's own floor: the same frames from an array already in memory
        frames = np.asarray(viewer.layers[-1].data[:, :: max(n_e // 64, 1)])
        cube = np.repeat(frames, max(n_e // 64, 1), axis=1)[:, :n_e]
        viewer.layers.clear()
        viewer.add_image(cube)
        app.processEvents()
        update(1, 1)
        run("in-memory numpy (napari and drawing alone)")
        ok = all(v >= 20 for v in results.values())
        print(f"target >= 20 updates/s from the store: {'met' if ok else 'NOT met'}")
        viewer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        from pyvirtualdisplay import Display

        with Display(visible=False, size=(1280, 800), color_depth=24):
            main()
    else:
        main()
