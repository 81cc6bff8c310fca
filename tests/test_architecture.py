"""Imports point one way: widgets -> acquisition / analysis / io -> the core ->
devices -> simulation (or hardware); ``model`` below them all. Checked on the
source (every import statement, also those inside functions), so that a late
import cannot walk around the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "napari_seccm"

#: package -> the packages of napari_seccm it must never import
FORBIDDEN = {
    # the engine, plans, store and waits talk to devices through the core only
    "acquisition": ("devices", "simulation", "widgets"),
    "analysis": ("devices", "acquisition.engine", "acquisition.scan", "widgets"),
    "widgets": ("devices", "simulation"),
    "devices": ("acquisition", "analysis", "widgets", "io", "fakes"),
    "simulation": ("devices", "acquisition", "analysis", "widgets", "io", "fakes"),
    # the fake instruments stand where the hardware does: below the devices
    "fakes": ("devices", "acquisition", "analysis", "widgets", "io"),
    "model": ("devices", "simulation", "acquisition", "analysis", "widgets", "io"),
}


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by a module of the package."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append(mod)
            out.extend(f"{mod}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_one_way(layer: str) -> None:
    bad = []
    for path in sorted((PKG / layer).rglob("*.py")):
        for mod in _imports(path):
            for other in FORBIDDEN[layer]:
                target = f"napari_seccm.{other}"
                if mod == target or mod.startswith(target + "."):
                    bad.append(f"{path.relative_to(PKG.parent)} imports {mod}")
    assert bad == []


def test_the_checker_sees_relative_imports(tmp_path: Path) -> None:
    """The check itself can fail: a relative import of the simulator from the
    engine's folder is seen as napari_seccm.simulation."""
    fake = PKG / "acquisition" / "engine.py"
    assert "napari_seccm.acquisition.store" in _imports(fake)
    probe = PKG / "acquisition" / "_probe_for_test.py"
    try:
        probe.write_text("def f():\n    from ..simulation import physics\n")
        assert "napari_seccm.simulation" in _imports(probe)
    finally:
        probe.unlink()
