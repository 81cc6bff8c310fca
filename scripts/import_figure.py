"""The README's import figure: a WEC-SPM-layout TDMS run, imported and analysed.

Writes a hopping run in WEC-SPM's TDMS layout (a 24 x 24 map at 0.5 um over a
film with 3 um stripes of low current and a tilted surface), imports it with
``napari-seccm import``, prints ``napari-seccm analyze`` and draws the imported
current map, the contact-height map and one landing's approach curve to
``docs/images/imported_wec_map.png``.

    python scripts/import_figure.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHANNELS = (
    "X (um)", "Y (um)", "Z (um)", "V1 (V)", "V2 (V)", "Current1 (A)", "Current 2 (A)",
    "Current 3 (A)", "FeedbackType ", "Line Number", "Lockin Amplitude", "Lockin  Phase", "dt(s)",
)  # fmt: skip


def write_run(path: Path, n: int = 24, pitch: float = 0.5, fs: float = 5000.0) -> None:
    from nptdms import ChannelObject, GroupObject, RootObject, TdmsWriter

    rng = np.random.default_rng(7)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in CHANNELS}
    first = True
    for r in range(n):
        for c in range(n) if r % 2 == 0 else reversed(range(n)):  # serpentine
            x, y = c * pitch + rng.normal(0, 0.003), r * pitch + rng.normal(0, 0.003)
            zc = 10.0 - 0.02 * x + 0.01 * y
            low = ((x + 0.6 * y) % 3.0) < 1.0  # stripes of low current
            i_on = (0.4 if low else 1.0) * 1e-9
            parts = [
                (1 if first else 2, 60, np.linspace(zc + 0.5, zc, 60),
                 np.r_[rng.normal(0, 1e-12, 59), 25e-12]),
                (4, 100, np.full(100, zc), i_on + rng.normal(0, 5e-12, 100)),
                (3, 20, np.linspace(zc, zc + 0.5, 20), rng.normal(0, 1e-12, 20)),
                (0, 20, np.full(20, zc + 0.5), rng.normal(0, 1e-12, 20)),
            ]  # fmt: skip
            first = False
            for fb, k, z, i in parts:
                for name, v in (
                    ("X (um)", x), ("Y (um)", y), ("V1 (V)", 1.0), ("V2 (V)", 0.0),
                    ("Current 2 (A)", 0.0), ("Current 3 (A)", 0.0), ("FeedbackType ", fb),
                    ("Line Number", r), ("Lockin Amplitude", 0.0), ("Lockin  Phase", 0.0),
                    ("dt(s)", 1 / fs),
                ):  # fmt: skip
                    cols[name].append(np.full(k, v, dtype=float))
                cols["Z (um)"].append(z)
                cols["Current1 (A)"].append(i)
    with TdmsWriter(str(path)) as w:
        w.write_segment(
            [RootObject({"name": "simulated WEC-SPM run"}), GroupObject("Data")]
            + [ChannelObject("Data", k, np.concatenate(v)) for k, v in cols.items()]
        )


def main(out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import zarr

    from napari_seccm.acquisition.store import ScanStore
    from napari_seccm.analysis.figures import show_map
    from napari_seccm.cli import main as cli

    src = out_dir / "wec_run.tdms"
    store = out_dir / "wec_run.seccm.zarr"
    write_run(src)
    cli(["import", str(src), "--out", str(store), "--overwrite"])
    cli(["analyze", str(store)])
    with ScanStore.open(store) as s:
        g = s.grid
        cur, hgt = s.current_map(), s.height_map()
    root = zarr.open_group(str(store), mode="r")
    az, ai = root["approach/z_um"][100], root["approach/current_A"][100]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.4))
    geo = {"x0_um": g.x0_um, "y0_um": g.y0_um, "pitch_um": g.pitch_um}
    show_map(a1, cur, label="current at 1.0 V (nA)", scale=1e9, **geo)
    a1.set_title("imported WEC-SPM run: current")
    show_map(a2, hgt, label="contact height (um)", cmap="magma", **geo)
    a2.set_title("contact height (Z at the end of each approach)")
    a3.plot(az, ai * 1e12, ".-")
    a3.set_xlabel("Z (um)")
    a3.set_ylabel("I (pA)")
    a3.set_title("approach curve of landing 100 (approach/)")
    a3.grid(alpha=0.3)
    fig.tight_layout()
    png = REPO / "docs" / "images" / "imported_wec_map.png"
    fig.savefig(png, dpi=90)
    print(f"figure: {png}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d))
