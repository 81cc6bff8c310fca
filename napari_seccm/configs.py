"""The shipped Micro-Manager configurations, and loading a core from one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymmcore_plus.experimental.unicore import UniMMCore

SIMULATED = "seccm_simulated.cfg"
WITH_DEMO_MICROSCOPE = "seccm_with_demo_microscope.cfg"


def config_dir() -> Path:
    """Folder of the shipped configs (in a wheel: napari_seccm/_configs)."""
    here = Path(__file__).parent
    for cand in (here / "_configs", here.parent / "micromanager_config"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("the shipped Micro-Manager configs were not found")


def config_path(name_or_path: str | Path = SIMULATED) -> Path:
    """A shipped config by name, or any existing file path."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p.resolve()
    shipped = config_dir() / str(name_or_path)
    if shipped.exists():
        return shipped
    raise FileNotFoundError(
        f"Micro-Manager config {str(name_or_path)!r} not found (neither a file nor one of "
        f"the shipped configs: {sorted(x.name for x in config_dir().glob('*.cfg'))})"
    )


def load_core(config: str | Path = SIMULATED, *, quiet: bool = True) -> UniMMCore:
    """A UniMMCore with ``config`` loaded (the simulated SECCM by default).

    ``quiet`` lowers pymmcore-plus's per-event debug logging, which otherwise
    costs more than a simulated hop.
    """
    from pymmcore_plus.experimental.unicore import UniMMCore

    if quiet:
        logging.getLogger("pymmcore-plus").setLevel(logging.WARNING)
    core = UniMMCore()
    core.loadSystemConfiguration(str(config_path(config)))
    return core
