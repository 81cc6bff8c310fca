"""The simulated SECCM made ideal, for tests that compare maps point for point.

The simulated film and droplet are realistic by default (landing-to-landing
footprint scatter, wetting faults, drift, 1/f noise: see ``docs/devices.md``);
``IDEAL_PROPERTIES`` of the simulated hub switches all of that off. A test
that runs the CLI in a subprocess cannot set properties itself: it passes the
config written here instead.
"""

from __future__ import annotations

from pathlib import Path

from napari_seccm.devices.simulated import IDEAL_PROPERTIES

REPO = Path(__file__).resolve().parents[1]
SIMULATED_CFG = REPO / "micromanager_config" / "seccm_simulated.cfg"
INIT_LINE = "Property,Core,Initialize,1"


def ideal_config(folder: Path, hub: str = "SECCM") -> Path:
    """The shipped simulated config with the idealizing properties set after
    initialization; returns the new config's path (in ``folder``)."""
    lines = SIMULATED_CFG.read_text().splitlines()
    at = lines.index(INIT_LINE) + 1
    extra = [f"#py Property,{hub},{name},{value!r}" for name, value in IDEAL_PROPERTIES.items()]
    out = Path(folder) / "seccm_simulated_ideal.cfg"
    out.write_text("\n".join([*lines[:at], *extra, *lines[at:]]) + "\n")
    return out
