"""Rehearsal: start the fake instruments a real-hardware config needs, and write
a copy of the config that points at them.

``napari-seccm fake-hardware CONFIG --out REHEARSAL.cfg`` reads the config's
hubs (``#py pyDevice,<label>,<module>,<hub class>``), starts one fake per
hardware hub, all on one simulated cell and stage (:class:`~.world.FakeWorld`),
and writes the config with each hub's connection properties set to its fake
(a TCP address, a pseudo-terminal, a gRPC address). Load that copy in napari
(Rig > Load config) or give it to ``napari-seccm scan --config``: approach,
scan, stop and emergency stop run through the real drivers and the unmodified
vendor libraries, before the instrument is touched.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .world import FakeWorld

if TYPE_CHECKING:
    from collections.abc import Callable

_PYDEVICE = re.compile(r"^#py\s+pyDevice,([^,]+),([^,]+),([^,\s]+)\s*$")
_INIT = re.compile(r"^Property,Core,Initialize,1\s*$")


@dataclass
class Rehearsal:
    """The fakes started for one config, and the rewritten config."""

    world: FakeWorld
    fakes: dict[str, Any] = field(default_factory=dict)
    #: hub label -> {property: value} set in the written config
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    config: Path | None = None

    def close(self) -> None:
        for f in self.fakes.values():
            with contextlib.suppress(Exception):
                (getattr(f, "close", None) or f.stop)()

    def __enter__(self) -> Rehearsal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> list[str]:
        out = []
        for label, props in self.settings.items():
            fake = self.fakes[label]
            what = ", ".join(f"{k}={v}" for k, v in props.items())
            out.append(f"{label}: {type(fake).__name__} ({what})")
        return out


def _start_pi(world: FakeWorld, label: str, props: dict[str, str]) -> tuple[Any, dict[str, str]]:
    from .gcs import FakeGCS

    axes = {props.get(f"Axis{r}", d): r for r, d in (("X", "1"), ("Y", "2"), ("Z", "3"))}
    axes = {k: v for k, v in axes.items() if k}
    fake = FakeGCS(world, axes=axes)
    if props.get("Connection", "TCP") == "Serial":
        return fake, {"SerialPort": fake.serve_pty()}
    host, port = fake.serve_tcp()
    return fake, {"Connection": "TCP", "Host": host, "TCPPort": str(port)}


def _start_nidaq(world: FakeWorld, label: str, props: dict[str, str]) -> tuple[Any, dict[str, str]]:
    from .nidaq_grpc import FakeNIDAQServer

    def num(key: str, default: float) -> float:
        return float(props.get(key, default))

    fake = FakeNIDAQServer(
        world,
        device=props.get("Device", "Dev1"),
        potential_channel=props.get("PotentialChannel", "ao0"),
        current_channel=props.get("CurrentChannel", "ai0"),
        z_channel=props.get("ZChannel", "ao1"),
        potential_scale=num("PotentialGain_V_per_V", 1.0),
        gain_V_per_A=num("AmplifierGain_V_per_A", 1e9),
        z_um_per_V=num("ZScale_um_per_V", 10.0),
        z_offset_um=num("ZOffset_um", 0.0),
    )
    return fake, {"GrpcAddress": fake.start()}


def _start_emstat(
    world: FakeWorld, label: str, props: dict[str, str]
) -> tuple[Any, dict[str, str]]:
    from .methodscript import FakeEmStat

    model = props.get("Model", "auto")
    device = {"EmStat4 LR": "es4_lr", "EmStat4 HR": "es4_hr"}.get(model, "espico")
    fake = FakeEmStat(world, device_type=device).start()
    return fake, {"Port": fake.port}


#: hub class -> how to start its fake: (world, label, the config's properties
#: of the hub) -> (the fake, the properties that point the hub at it)
STARTERS: dict[str, Callable[[FakeWorld, str, dict[str, str]], tuple[Any, dict[str, str]]]] = {
    "PIHub": _start_pi,
    "NIDAQHub": _start_nidaq,
    "PalmSensHub": _start_emstat,
}


def hubs_of(text: str) -> dict[str, str]:
    """The config's devices: label -> class name."""
    out = {}
    for line in text.splitlines():
        m = _PYDEVICE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(3)
    return out


def _props_of(text: str, label: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        parts = line.strip().split(",", 3)
        if len(parts) == 4 and parts[0] == "#py Property" and parts[1] == label:
            out[parts[2]] = parts[3]
    return out


def start(config: str | Path, out: str | Path, world: FakeWorld | None = None) -> Rehearsal:
    """Start the fakes ``config`` needs and write the rehearsal config to ``out``."""
    src = Path(config)
    text = src.read_text(encoding="utf-8")
    devices = hubs_of(text)
    hw = {label: cls for label, cls in devices.items() if cls in STARTERS}
    if not hw:
        raise ValueError(
            f"{src} loads no hardware hub that a fake stands in for (known: "
            f"{', '.join(sorted(STARTERS))}); its devices: "
            f"{', '.join(f'{k} ({v})' for k, v in devices.items()) or 'none'}"
        )
    reh = Rehearsal(world or FakeWorld())
    try:
        for label, cls in hw.items():
            fake, settings = STARTERS[cls](reh.world, label, _props_of(text, label))
            reh.fakes[label] = fake
            reh.settings[label] = settings
    except BaseException:
        reh.close()
        raise
    lines = []
    for line in text.splitlines():
        parts = line.strip().split(",", 3)
        if (
            len(parts) == 4
            and parts[0] == "#py Property"
            and parts[2] in reh.settings.get(parts[1], {})
        ):
            continue  # the fake's setting replaces it
        if _INIT.match(line.strip()):
            lines.append("# the fake instruments of `napari-seccm fake-hardware`")
            for label, props in reh.settings.items():
                lines += [f"#py Property,{label},{k},{v}" for k, v in props.items()]
        lines.append(line)
    dst = Path(out)
    dst.write_text(
        f"# Rehearsal copy of {src.name}: every hardware hub points at a fake instrument.\n"
        + "\n".join(lines)
        + "\n",
        encoding="utf-8",
    )
    reh.config = dst
    return reh
