"""``napari-seccm``: the SECCM from the command line (no GUI needed).

Commands: ``demo``, ``scan``, ``resume``, ``info``, ``plan``, ``gui``,
``analyze``, ``export``, ``import``, ``preflight``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._format import format_duration

if TYPE_CHECKING:
    from .acquisition.scan import Scan


def _fmt_duration(s: float) -> str:
    return format_duration(s, compact=True)


# ------------------------------------------------------------------ running
#: exit codes of ``scan``, ``resume`` and ``demo`` (2: bad input, nothing moved)
EXIT_COMPLETE = 0
#: the scan ended with a fault or an error: a device failed or missed its
#: deadline, the retract or the cell-off failed, or the emergency stop was used
#: (a second Ctrl-C): the rig needs a look before a resume
EXIT_FAULT = 1
EXIT_BAD_INPUT = 2
#: canceled and safe (pipette retracted, cell off, store closed 'canceled'):
#: 128 + the signal, as a shell reports a process ended by it
EXIT_SIGHUP = 129  # the terminal closed, the SSH session dropped
EXIT_SIGINT = 130  # Ctrl-C
#: SIGTERM (a service stop, kill): the emergency stop; the store closed 'fault'
EXIT_SIGTERM = 143
#: after the emergency stop, how long the CLI waits for the scan to close its
#: store (nothing is retracted, so it takes about a second); past that, or on
#: a third signal, it exits and leaves the store as it is (resumable)
ESTOP_WAIT_S = 10.0


def _signal_number(name: str) -> int | None:
    return getattr(signal, name, None)


class _SignalStop:
    """What SIGINT, SIGHUP and SIGTERM do to the scan the CLI runs.

    The first Ctrl-C, or SIGHUP: cancel (the step in progress aborted, the
    pipette retracted, the cell off, the store closed 'canceled'). A second
    Ctrl-C, or SIGTERM: the emergency stop (everything halts where it is, the
    cell off, latched; the store closed 'fault'). After that, one more Ctrl-C
    or SIGTERM stops waiting for the store. The work is done on a helper
    thread: the handler runs on the main thread and returns at once.
    """

    def __init__(self, scan: Scan, say: Any) -> None:
        self.scan = scan
        self.say = say
        self.received: list[str] = []
        self.canceling = False
        self.estop_at: float | None = None
        self.estop_by = ""
        self.estop_done: list[str] = []
        self.give_up = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for name in ("SIGINT", "SIGHUP", "SIGTERM"):
            sig = _signal_number(name)
            if sig is None:  # no SIGHUP on Windows
                continue
            if name == "SIGHUP" and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # nohup: the scan is meant to outlive the terminal
            self._old[sig] = signal.signal(sig, self)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def __call__(self, signum: int, frame: Any) -> None:
        import threading
        import time

        name = signal.Signals(signum).name
        self.received.append(name)
        if self.estop_at is not None:
            if name != "SIGHUP":
                self.give_up = True
                self.say(
                    f"[red]{name}: not waiting for the scan any longer; exiting now "
                    "(the store keeps every point written so far: napari-seccm resume)"
                )
            return
        if name == "SIGTERM" or (name == "SIGINT" and self.canceling):
            self.estop_at = time.monotonic()
            self.estop_by = "SIGTERM" if name == "SIGTERM" else "a second Ctrl-C"
            self.say(
                f"[red]EMERGENCY STOP ({self.estop_by}): every motion and waveform halted where "
                "it is, the cell switched off, latched; the pipette is NOT retracted; saving "
                "the points measured..."
            )

            def estop() -> None:
                self.estop_done = self.scan.emergency_stop(f"{self.estop_by} at the command line")

            threading.Thread(target=estop, name="seccm-estop", daemon=True).start()
            return
        if self.canceling:
            return  # SIGHUP while already stopping: keep stopping
        self.canceling = True
        if name == "SIGINT":
            what, reason = "Ctrl-C", None
        else:
            what = f"{name}: the terminal closed or the session ended"
            reason = f"stopped by {name} (the terminal closed or the session ended)"
        self.say(
            f"[yellow]stopping ({what}): aborting the step in progress, retracting the "
            "pipette, switching the cell off, saving; Ctrl-C again for the emergency stop"
        )
        threading.Thread(
            target=self.scan.cancel, args=(reason,), name="seccm-cancel", daemon=True
        ).start()

    def exit_code(self, status: str) -> int:
        """SIGTERM asked the process to end: 143 whatever the scan's status.
        Otherwise a fault or an error is 1 (also after the emergency stop of a
        second Ctrl-C), and a scan canceled safely 128 + the signal."""
        if "SIGTERM" in self.received:
            return EXIT_SIGTERM
        if status == "complete":
            return EXIT_COMPLETE
        if status != "canceled":
            return EXIT_FAULT
        return EXIT_SIGHUP if self.received[:1] == ["SIGHUP"] else EXIT_SIGINT


def _run_with_progress(scan: Scan, title: str, quiet: bool = False) -> tuple[str, int]:
    """Run a scan on a worker thread with a progress bar; Ctrl-C, SIGHUP and
    SIGTERM stop it safely (see :class:`_SignalStop`). Returns the scan's
    final status (``running`` if it was left after an emergency stop) and the
    exit code."""
    import contextlib
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)

    def say(text: str) -> None:
        # the terminal may be gone (SIGHUP): saying so must not stop the scan
        with contextlib.suppress(Exception):
            console.print(text)

    est = scan.plan.estimate_time_s() * scan.pending.size / max(scan.n_total, 1)
    if not quiet:
        say(
            f"{title}: {scan.pending.size} of {scan.n_total} points to measure, "
            f"estimated instrument time {_fmt_duration(est)}; Ctrl-C stops safely "
            "(twice: emergency stop)"
        )
    stop = _SignalStop(scan, say)
    stop.install()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("points"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    task = progress.add_task(title, total=scan.n_total, completed=scan.points_done)
    show = True

    def update() -> None:
        nonlocal show
        if show:
            try:
                progress.update(task, completed=scan.points_done)
            except Exception:  # the terminal is gone: keep the scan, drop the bar
                show = False

    try:
        with contextlib.suppress(Exception):
            progress.start()
        # the CLI handles the signals itself (the scan's own handlers would
        # treat SIGTERM and SIGHUP the same way, but not Ctrl-C)
        scan.start(handle_signals=False)
        while scan.is_running():
            scan.wait(0.1)
            update()
            if stop.give_up or (
                stop.estop_at is not None and time.monotonic() - stop.estop_at > ESTOP_WAIT_S
            ):
                break
        update()
    finally:
        with contextlib.suppress(Exception):
            progress.stop()
        stop.restore()
    left = scan.is_running()
    if left:
        # stuck in a device call after the emergency stop: the scan thread is a
        # daemon; the store stays as it is ('running', shown as interrupted)
        scan.exit_timeout_s = 0.0
        status = "running"
    else:
        status = scan.final_status or "error"
    code = stop.exit_code(status)
    if stop.estop_done:
        say("emergency stop: " + "; ".join(stop.estop_done))
    if not quiet or status != "complete":
        color = {"complete": "green", "canceled": "yellow"}.get(status, "red")
        if left:
            waited = "a third signal" if stop.give_up else f"{ESTOP_WAIT_S:g} s"
            say(
                f"[red]scan left running[/]: the scan did not end after the emergency stop "
                f"(gave up after {waited}); the store {scan.store.path} is left as it was "
                "(status running, shown as interrupted) with every point written so far; "
                "after a look at the rig, napari-seccm resume measures the rest"
            )
        else:
            reason = scan.store.meta.get("reason") or ""
            say(f"[{color}]scan {status}[/]" + (f": {reason}" if reason else ""))
            with contextlib.suppress(Exception):
                info = store_info(scan.store.path)
                say(
                    f"  {info['points_done']} of {info['points_total']} points in {info['path']}; "
                    f"instrument time {_fmt_duration(info['instrument_time_s'])}"
                )
        if status != "complete":
            say(_ending_line(scan, status, stop, code))
    return status, code


def _ending_line(scan: Scan, status: str, stop: _SignalStop, code: int) -> str:
    """The last line: is the rig safe, what next, and the exit code."""
    path = scan.store.path
    if status == "canceled":
        text = (
            "the pipette is retracted and the cell off; "
            f"napari-seccm resume {path} measures the remaining points"
        )
    elif stop.estop_at is not None:
        text = (
            f"EMERGENCY STOP latched ({stop.estop_by}): the pipette was left where it stopped, "
            f"the cell is off; check the rig, then napari-seccm resume {path}"
        )
    elif status == "running":
        text = "the rig may not be safe: check it"
    else:
        text = f"{status.upper()}: the rig may need a look (see the reason above) before a resume"
    return f"{text} (exit code {code})"


#: plans estimated to take longer are refused unless --max-hours says otherwise
MAX_HOURS = 48.0


def _check_duration(plan: Any, max_hours: float) -> None:
    """Refuse a plan estimated to run longer than ``max_hours`` (instrument time)."""
    est_h = plan.estimate_time_s() / 3600.0
    if est_h > max_hours:
        raise ValueError(
            f"the plan has {plan.n_points():,} points, estimated {est_h:.3g} h of instrument "
            f"time, above --max-hours {max_hours:g}: check the pitch and the area, or pass a "
            "larger --max-hours"
        )


def _store_name(out: str) -> str:
    """Stores are named *.seccm.zarr (that is how napari and the reader know
    them): the suffix is added when missing, and said."""
    if out.rstrip("/").endswith(".seccm.zarr"):
        return out
    named = out.rstrip("/").removesuffix(".zarr") + ".seccm.zarr"
    print(f"note: the store is named {named} (stores end in .seccm.zarr)", file=sys.stderr)
    return named


def _load_core(config: str):
    import logging

    from .configs import load_core

    core = load_core(config)
    # the CLI reports how a scan ended itself; pymmcore-plus's own 'MDA
    # Canceled' warning (with colour codes, even into files) only repeats it
    logging.getLogger("pymmcore-plus").setLevel(logging.ERROR)
    return core


def _say_if_simulated(core: Any) -> None:
    from .acquisition.control import simulated_devices

    sim = simulated_devices(core)
    if sim:
        print(
            f"on the SIMULATED instrument ({', '.join(sim)}): no sample is measured; "
            "load your rig's config with --config"
        )


def _load_plan(path: str) -> Any:
    """A plan file; its field errors in one line that names the file."""
    from pydantic import ValidationError

    from .acquisition.plan import ScanPlan, validation_lines

    try:
        return ScanPlan.load(path)
    except ValidationError as e:
        lines = validation_lines(e, field_prefix="plan field ", with_input=True)
        raise ValueError(f"invalid plan {path}: " + "; ".join(lines)) from None


def cmd_scan(args: argparse.Namespace) -> int:
    from .acquisition.plan import ScanPlan
    from .acquisition.scan import Scan
    from .acquisition.store import ScanStore

    plan = _load_plan(args.plan) if args.plan else ScanPlan()
    _check_duration(plan, args.max_hours)
    args.out = _store_name(args.out)
    ScanStore.check_creatable(args.out, overwrite=args.overwrite)  # before loading the rig
    core = _load_core(args.config)
    _say_if_simulated(core)
    scan = Scan.create(core, plan, args.out, overwrite=args.overwrite)
    return _run_with_progress(scan, f"scan -> {args.out}", args.quiet)[1]


def cmd_preflight(args: argparse.Namespace) -> int:
    """Noise, a threshold with its false-trigger rate, and (landing once) the
    capacitance and the pipette's aperture: each with its unit and uncertainty."""
    from .acquisition.plan import ScanPlan
    from .acquisition.preflight import run_preflight

    plan = _load_plan(args.plan) if args.plan else ScanPlan()
    core = _load_core(args.config)
    _say_if_simulated(core)
    try:
        report = run_preflight(
            core,
            plan,
            noise_s=args.noise_s,
            landing=not args.no_landing,
            step_V=args.step_V,
            n_steps=args.steps,
            sample_ohm=args.sample_ohm,
            target_per_approach=args.target,
        )
    except (RuntimeError, OSError) as e:  # a device failed: not the input's fault
        print(f"error: preflight failed: {e}", file=sys.stderr)
        return EXIT_FAULT
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=float))
    else:
        print("\n".join(report.lines()))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from .acquisition.scan import Scan
    from .acquisition.store import ScanStore

    with ScanStore.open(args.store) as s:
        s.validate()  # a store resume would refuse never loads the rig
        cfg = args.config or s.meta.get("rig", {}).get("config_file") or "seccm_simulated.cfg"
    core = _load_core(cfg)
    _say_if_simulated(core)
    scan = Scan.resume(core, args.store)
    return _run_with_progress(scan, f"resume {args.store}", args.quiet)[1]


def store_info(path: str | Path) -> dict[str, Any]:
    """The facts ``napari-seccm info`` prints, as a dict (reading writes nothing)."""
    from .acquisition.store import ScanStore, StoreDamagedError, half_created

    why = half_created(path)
    if why:
        return {
            "path": str(path),
            "status": "half-created",
            "reason": why,
            "points_done": 0,
            "points_total": None,
        }
    with ScanStore.open(path) as s:
        meta = s.meta
        problems = s.problems()
        try:
            counts = s.status_counts()
            inst = s.instrument_time_s()
        except StoreDamagedError:
            counts, inst = {"pending": 0}, float("nan")
        pending = counts.pop("pending")
        g = s.grid
        return {
            "path": str(path),
            "name": meta["plan"].get("name", ""),
            "status": s.status,
            "reason": meta.get("reason", ""),
            "map_shape": [g.ny, g.nx],
            "pitch_um": g.pitch_um,
            "points_done": s.n_points - pending,
            "points_total": s.n_points,
            "landing_status": counts,
            "instrument_time_s": inst,
            "wall_time_s": float(meta.get("wall_time_s", 0.0)),
            "created": meta.get("created"),
            "started": meta.get("started"),
            "ended": meta.get("ended"),
            "simulated": list(meta.get("rig", {}).get("simulated", [])),
            "segments": _segment_lines(s),
            "problems": problems,
        }


def _segment_lines(store: Any) -> list[str]:
    """The sweep segments of a voltammetric store (none for a held potential)."""
    from .analysis.voltammetry import VoltammetryTable

    try:
        return VoltammetryTable.from_store(store).lines()
    except (ValueError, KeyError):
        return []


def cmd_info(args: argparse.Namespace) -> int:
    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    if info["status"] == "half-created":
        print(info["path"])
        print(
            "  status           half-created  (caught mid-creation, no point was measured; "
            "remove it with napari-seccm remove-incomplete PATH or recreate it with --overwrite)"
        )
        return 0
    print(f"{info['path']}  ({info['name']})")
    print(
        f"  status           {info['status']}" + (f"  ({info['reason']})" if info["reason"] else "")
    )
    ny, nx = info["map_shape"]
    print(f"  map              {ny} x {nx} px at {info['pitch_um']:g} um")
    print(f"  points           {info['points_done']} of {info['points_total']} done")
    counts = ", ".join(f"{k} {v}" for k, v in info["landing_status"].items() if v)
    print(f"  landings         {counts or 'none yet'}")
    print(
        f"  instrument time  {_fmt_duration(info['instrument_time_s'])} ({info['instrument_time_s']:.1f} s)"
    )
    print(f"  wall time        {_fmt_duration(info['wall_time_s'])} ({info['wall_time_s']:.1f} s)")
    if info["simulated"]:
        print(
            f"  instrument       SIMULATED ({', '.join(info['simulated'])}): no sample was measured"
        )
    for line in info.get("segments", []):
        print(f"  sweep            {line}")
    for line in info["problems"]:
        print(f"  problem          {line}")
    if info["problems"]:
        print(
            "  resume will refuse this store; its completed points can still be read and exported"
        )
    return 0


def cmd_remove_incomplete(args: argparse.Namespace) -> int:
    from .acquisition.store import ScanStore

    ScanStore.remove_incomplete(args.store)
    print(f"removed {args.store} (caught mid-creation, no point was measured)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from .acquisition.plan import plan_template_yaml

    text = plan_template_yaml()
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise ValueError(f"--out {out} is a directory: give a file name, e.g. plan.yaml")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"--out {out}: the folder {out.parent} does not exist")
        if out.exists() and not args.overwrite:
            print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
        out.write_text(text)
        print(f"wrote {out}")
    else:
        print(text, end="")
    return 0


# --------------------------------------------------------------------- demo
def _next_run_dir(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    k = 1
    while (base / f"run-{k:03d}").exists():
        k += 1
    d = base / f"run-{k:03d}"
    d.mkdir()
    return d


def cmd_demo(args: argparse.Namespace) -> int:
    """The report's experiment on the simulated LLTO film: an I-V at one landing,
    then a 12 x 12 um map at 1.0 V; stores, a PNG figure and a summary."""
    import numpy as np

    from .acquisition.plan import PointsArea, RectangleArea, ScanPlan, Staircase
    from .acquisition.scan import Scan
    from .acquisition.store import ScanStore
    from .analysis.iv import fit_iv

    # both plans, the config and the rig are checked before anything is made
    # or moved: a bad argument leaves no run folder behind
    if not args.pitch > 0:
        raise ValueError(f"--pitch must be above 0 um, got {args.pitch:g} um")
    iv_plan = ScanPlan(
        name="I-V at one landing",
        area=PointsArea(points_um=[(args.iv_x, args.iv_y)]),
        measurement=Staircase(start_V=0.0, end_V=1.0, steps=11, hold_s=0.02),
    )
    map_plan = ScanPlan(
        name="LLTO map at 1.0 V",
        area=RectangleArea(width_um=12.0, height_um=12.0),
        pitch_um=args.pitch,
    )
    _check_duration(map_plan, args.max_hours)
    core = _load_core(args.config)
    from .acquisition.plan import check_plan_against_core

    check_plan_against_core(iv_plan, core)
    check_plan_against_core(map_plan, core)
    out = _next_run_dir(Path(args.out))
    print(f"napari-seccm demo: simulated SECCM, LLTO thin film; output in {out}/")

    # 1. I-V at one landing: an 11-step staircase 0 -> 1 V
    iv_scan = Scan.create(core, iv_plan, out / "iv.seccm.zarr")
    iv_status, code = _run_with_progress(iv_scan, "I-V", quiet=True)
    if iv_status != "complete":  # the reason is printed; the map is not started
        return code
    with ScanStore.open(out / "iv.seccm.zarr") as s:
        tr = s.trace(0)
        res = s.results()
    fs = iv_plan.potentiostat.sample_rate_Hz
    n_step = int(round(0.02 * fs))
    E_steps = iv_plan.measurement.potentials_V()
    I_steps = np.array(
        [
            np.mean(tr["current_A"][k * n_step + n_step // 2 : (k + 1) * n_step])
            for k in range(len(E_steps))
        ]
    )
    fit = fit_iv(E_steps, I_steps)
    print(
        f"\nI-V at x = {args.iv_x:g} um, y = {args.iv_y:g} um (contact at Z = {res['contact_z_um'][0]:.3f} um)"
    )
    print("  E (V)     I (nA)")
    for e, i in zip(E_steps, I_steps, strict=True):
        print(f"  {e:5.2f}  {i * 1e9:9.4f}")
    g, r2 = float(fit["conductance_S"]), float(fit["r2"])
    print(
        f"  linear fit: G = {g * 1e9:.3f} nS (R = {1 / g / 1e6:.1f} MOhm), "
        f"offset {float(fit['offset_A']) * 1e12:.2f} pA, R^2 = {r2:.5f}"
    )

    # 2. the map: 12 x 12 um at 1.0 V, hopping
    scan = Scan.create(core, map_plan, out / "map.seccm.zarr")
    print()
    status, code = _run_with_progress(scan, "map 12 x 12 um", quiet=args.quiet)
    if status not in ("complete", "canceled", "fault", "error"):
        return code  # left running after an emergency stop: no figure
    info = store_info(out / "map.seccm.zarr")
    print(
        f"map: {info['points_done']} points, status {info['status']}; instrument time "
        f"{_fmt_duration(info['instrument_time_s'])}, wall time {info['wall_time_s']:.1f} s"
    )
    fig_path = out / "seccm_demo.png"
    _demo_figure(out / "map.seccm.zarr", E_steps, I_steps, fit, fig_path)
    print(f"figure: {fig_path}")
    print(
        f"stores: {out / 'iv.seccm.zarr'}, {out / 'map.seccm.zarr'} "
        f"(napari: File > Open, or `napari-seccm info`)"
    )
    del core
    return code


def _demo_figure(map_store: Path, E, I, fit, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .acquisition.store import ScanStore
    from .analysis.figures import show_map

    with ScanStore.open(map_store) as s:
        m = s.current_map()
        g = s.grid
        plan = s.plan()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.2, 1]})
    show_map(
        a1,
        m,
        x0_um=g.x0_um,
        y0_um=g.y0_um,
        pitch_um=g.pitch_um,
        label="current at 1.0 V (nA)",
        scale=1e9,
    )
    a1.set_title(f"SECCM hopping map, {plan.pitch_um:g} um pitch")
    a2.plot(E, np.asarray(I) * 1e9, "o", label="measured (step means)")
    ee = np.linspace(min(E), max(E), 50)
    a2.plot(
        ee,
        (float(fit["conductance_S"]) * ee + float(fit["offset_A"])) * 1e9,
        "-",
        label=f"G = {float(fit['conductance_S']) * 1e9:.2f} nS, R² = {float(fit['r2']):.4f}",
    )
    a2.set_xlabel("E (V vs Li/Li+)")
    a2.set_ylabel("I (nA)")
    a2.set_title("I-V at one landing")
    a2.legend(loc="upper left")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_gui(args: argparse.Namespace) -> int:  # pragma: no cover - interactive
    import napari

    viewer = napari.Viewer(title="napari-seccm")
    viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    viewer.window.add_plugin_dock_widget("napari-seccm", "Scan", tabify=True)
    viewer.window.add_plugin_dock_widget("napari-seccm", "Inspector")
    napari.run()
    return 0


# ---------------------------------------------------------- analyze / export
# ------------------------------------------------------------ argument checks
class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line ``error: ...`` for a bad argument
    (exit code 2, nothing made or moved), then where to find the options."""

    def error(self, message: str) -> Any:
        # "argument --x: --x must ..." -> "--x must ..."
        head, sep, rest = message.partition(": ")
        if sep and head.startswith("argument ") and rest.startswith(head[9:].split("/")[0]):
            message = rest
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _number(
    flag: str,
    unit: str = "",
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    note: str = "",
) -> Any:
    """An argparse ``type=``: a finite number in a range, or ArgumentTypeError
    naming the flag, the value and the limit."""
    u = f" {unit}" if unit else ""
    in_unit = f" ({unit})" if unit else ""
    if lo is not None and hi is not None:
        rng = f"lie in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}{u}"
    elif lo is not None:
        rng = f"be {'above' if lo_open else 'at least'} {lo:g}{u}"
    elif hi is not None:
        rng = f"be {'below' if hi_open else 'at most'} {hi:g}{u}"
    else:
        rng = ""
    note = f" ({note})" if note else ""

    def parse(text: str) -> float | int:
        try:
            v: float | int = int(text) if integer else float(text)
        except (ValueError, OverflowError):
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(
                f"{flag} takes {kind}{in_unit}, got {text!r}"
            ) from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(
                f"{flag} must be a finite number{in_unit}{note}, got {text!r}"
            )
        ok = (lo is None or (v > lo if lo_open else v >= lo)) and (
            hi is None or (v < hi if hi_open else v <= hi)
        )
        if not ok:
            raise argparse.ArgumentTypeError(f"{flag} must {rng}{note}, got {v:g}{u}")
        return v

    parse.__name__ = "integer" if integer else "number"
    return parse


#: --max-hours: above 0, at most a year of instrument time
MAX_HOURS_LIMIT = 24 * 365.0

_SERIES_OPTIONS = (
    # (flag, SeriesModel field, help)
    ("--tip-radius-nm", "tip_radius_nm", "pipette tip radius, nm"),
    ("--half-angle-deg", "half_angle_deg", "pipette half-cone angle, deg"),
    (
        "--electrolyte-S-per-cm",
        "electrolyte_S_per_cm",
        "conductivity of the pipette's electrolyte, S/cm",
    ),
    ("--footprint-radius-nm", "footprint_radius_nm", "droplet footprint radius, nm"),
    ("--thickness-nm", "thickness_nm", "film thickness, nm"),
    (
        "--sigma-film-S-per-cm",
        "sigma_film_S_per_cm",
        "in-plane film conductivity (collection term), S/cm",
    ),
    ("--pad-edge-x-um", "pad_edge_x_um", "x of the Au pad's edge (the pad covers x < this), um"),
    ("--asr-ohm-cm2", "asr_ohm_cm2", "area-specific interface resistance, Ohm cm^2 (default 0)"),
)


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    a = p.add_argument_group("analysis")
    a.add_argument(
        "--r2-min",
        type=_number("--r2-min", lo=0.0, hi=1.0),
        default=0.9,
        help="I-V fits with a lower R^2 are rejected (NaN), default 0.9",
    )
    a.add_argument(
        "--rest-potential-V",
        type=_number("--rest-potential-V", "V", lo=-100.0, hi=100.0),
        default=0.0,
        help="potential of zero current, for G = I / (E - E_rest) of a CA map (default 0)",
    )
    a.add_argument(
        "--settle-fraction",
        type=_number("--settle-fraction", lo=0.0, hi=1.0, hi_open=True),
        default=0.5,
        help="leading fraction of each staircase step left out of the I-V fit (default 0.5)",
    )
    a.add_argument(
        "--settle-s",
        type=_number("--settle-s", "s", lo=0.0),
        default=None,
        help="time after each step or sweep reversal left out of the I-V fit, s "
        "(default: five time constants of the potentiostat's filter)",
    )
    a.add_argument(
        "--branch",
        choices=("all", "up", "down"),
        default="all",
        help="sweep branch used by the I-V fit (LSV/CV)",
    )
    a.add_argument(
        "--potential-range-V",
        type=_number("--potential-range-V", "V", lo=-100.0, hi=100.0),
        nargs=2,
        metavar=("LO", "HI"),
        help="fit only samples programmed within [LO, HI] V",
    )
    m = p.add_argument_group(
        "series model (default: the store's rig snapshot, Sample device properties)"
    )
    for flag, dest, help_ in _SERIES_OPTIONS:
        unit = flag.rsplit("-", 1)[-1] if flag.endswith(("-nm", "-deg", "-um")) else ""
        if dest == "pad_edge_x_um":
            kind = _number(flag, unit)  # a position: any finite value
        elif dest == "asr_ohm_cm2":
            kind = _number(flag, "Ohm cm^2", lo=0.0)
        else:  # sizes, angles, conductivities
            kind = _number(flag, unit, lo=0.0, lo_open=True)
        m.add_argument(flag, dest=dest, type=kind, default=None, help=help_)


def _analysis_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if not 0.0 <= args.r2_min <= 1.0:
        raise ValueError(f"--r2-min must lie in [0, 1], got {args.r2_min:g}")
    if not 0.0 <= args.settle_fraction < 1.0:
        raise ValueError(f"--settle-fraction must lie in [0, 1), got {args.settle_fraction:g}")
    if args.potential_range_V and not args.potential_range_V[0] < args.potential_range_V[1]:
        lo, hi = args.potential_range_V
        raise ValueError(f"--potential-range-V needs LO < HI, got {lo:g} {hi:g} V")
    kw: dict[str, Any] = {
        "r2_min": args.r2_min,
        "rest_potential_V": args.rest_potential_V,
        "settle_fraction": args.settle_fraction,
        "settle_s": args.settle_s,
        "branch": args.branch,
        "potential_range_V": tuple(args.potential_range_V) if args.potential_range_V else None,
    }
    series = {dest: getattr(args, dest) for _, dest, _ in _SERIES_OPTIONS}
    return {**kw, "series": {k: v for k, v in series.items() if v is not None}}


def _require_store(path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if not (p / "zarr.json").exists():
        raise FileNotFoundError(f"{p} is not a SECCM scan store (no zarr.json)")


def cmd_analyze(args: argparse.Namespace) -> int:
    """Stripe period and angle, [100]/[001] ratios, conductivity, topography,
    with the analysis's warnings (JSON ``warnings``: ``{code, message}``)."""
    from .analysis.report import analyze_store, summary_text

    _require_store(args.store)
    if args.n_boot < 1:
        raise ValueError(f"--n-boot must be at least 1 (bootstrap resamples), got {args.n_boot}")
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; choose another name or pass --overwrite")
    try:
        result = analyze_store(
            args.store,
            anisotropy=args.anisotropy,
            min_period_um=args.min_period_um,
            max_period_um=args.max_period_um,
            n_boot=args.n_boot,
            **_analysis_kwargs(args),
        )
    except OSError as e:  # e.g. an unreadable store
        raise RuntimeError(f"cannot analyze {args.store}: {e}") from e
    text = json.dumps(result, indent=2) if args.json else summary_text(result)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Maps to GSF / GWY / TIFF / PNG, or the per-point table to CSV."""
    from .analysis.export import export_store

    _require_store(args.store)
    if args.potential is not None or args.segment is not None:
        return _export_at_potential(args)
    if args.traces or args.points:
        from .analysis.export import write_traces_csv

        if Path(args.out).suffix.lower() != ".csv" or args.format not in (None, "csv"):
            raise ValueError(f"--traces writes CSV: name the file *.csv, got {args.out!r}")
        try:
            points = [int(v) for v in args.points.split(",")] if args.points else None
        except ValueError as e:
            raise ValueError(
                f"--points takes point indices like 0,5,12, got {args.points!r}"
            ) from e
        out = write_traces_csv(args.store, args.out, points=points, overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    channels = [c.strip() for c in args.channels.split(",") if c.strip()] if args.channels else None
    try:
        out = export_store(
            args.store,
            args.out,
            fmt=args.format,
            channel=args.channel,
            channels=channels,
            overwrite=args.overwrite,
            **_analysis_kwargs(args),
        )
    except (IsADirectoryError, PermissionError) as e:
        raise RuntimeError(str(e)) from e
    print(f"wrote {out}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Other instruments' files into a new store (napari_seccm.io.importers)."""
    from .io.importers import ImportOptions, import_files

    opts = ImportOptions(
        pitch_um=args.pitch,
        readout_window_s=tuple(args.readout_window_s) if args.readout_window_s else None,
        current_channel=args.current_channel,
        potential_channel=args.potential_channel,
        potential_V=args.potential_V,
        positions=args.positions,
        grid=tuple(args.grid) if args.grid else None,
        grid_order=args.grid_order,
        origin_um=tuple(args.origin) if args.origin else (0.0, 0.0),
        columns=dict(c.split("=", 1) for c in args.columns.split(",") if "=" in c)
        if args.columns
        else {},
        csv_shape=args.csv_shape,
        allow_shared_pixels=args.allow_shared_pixels,
    )
    if args.columns and any("=" not in c for c in args.columns.split(",") if c.strip()):
        raise ValueError(f"--columns takes ROLE=COLUMN[@UNIT],..., got {args.columns!r}")
    out = import_files(
        args.files, args.out, fmt=args.format, options=opts, overwrite=args.overwrite
    )
    info = store_info(out)
    from .acquisition.store import ScanStore

    with ScanStore.open(out) as s:
        imp = s.meta["imported"]
    ny, nx = info["map_shape"]
    print(
        f"wrote {out}: {info['points_total']} landings from {len(imp['sources'])} file(s) ({imp['format']})"
    )
    print(f"  map {ny} x {nx} px at {info['pitch_um']:g} um ({imp['inferred']['pitch_rule']})")
    print(f"  measurement {imp['inferred']['measurement']}")
    print(f"  map value {imp['inferred']['readout_window']}")
    for note in imp["notes"]:
        print(f"  note: {note}")
    return 0


def _export_at_potential(args: argparse.Namespace) -> int:
    """``export --potential E [--segment k]``: the current map at one potential."""
    from .analysis.voltammetry import export_potential_map

    if args.potential is None:
        raise ValueError("--segment goes with --potential E (V): the map at E in that segment")
    if args.traces or args.points or args.channels or args.channel != "current":
        raise ValueError(
            "--potential maps the current at one potential: it does not go with "
            "--traces, --points, --channels or another --channel"
        )
    out = export_potential_map(
        args.store,
        args.out,
        args.potential,
        args.segment,
        fmt=args.format,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}")
    return 0


def cmd_movie(args: argparse.Namespace) -> int:
    """A movie of the current map as the potential sweeps (GIF or MP4)."""
    from .analysis.movie import write_movie

    _require_store(args.store)
    res = write_movie(
        args.store,
        args.out,
        segment=args.segment,
        fps=args.fps,
        frames_per_segment=args.frames,
        clim_nA=tuple(args.clim) if args.clim else None,
        overwrite=args.overwrite,
    )
    w, h = res["size_px"]
    lo, hi = res["clim_nA"]
    print(
        f"wrote {res['path']}: {res['frames']} frames of {w} x {h} px at {res['fps']:g} frames/s, "
        f"colour scale {lo:.4g} to {hi:.4g} nA"
    )
    return 0


def cmd_fake_hardware(args: argparse.Namespace) -> int:  # pragma: no cover - serves until stopped
    """Start the fake instruments of a real-hardware config; serve until Ctrl-C."""
    import signal
    import threading

    from .configs import config_path
    from .fakes import serve

    src = config_path(args.config)
    out = Path(args.out or f"{src.stem}-rehearsal.cfg")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists: give another --out, or --overwrite to replace it")
    if out.resolve() == src.resolve():
        raise ValueError(f"--out {out} is the config itself: give another file")
    stop = threading.Event()
    with serve.start(src, out) as reh:
        print(f"fake instruments for {src.name} (one simulated LLTO film and cell behind them):")
        for line in reh.describe():
            print(f"  {line}")
        print(f"rehearsal config: {out}")
        print(
            "load it in napari (Rig > Load config) or run "
            f"`napari-seccm scan --config {out} --out rehearsal.seccm.zarr`; "
            "Ctrl-C stops the fakes"
        )
        sys.stdout.flush()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
    print("fake instruments stopped")
    return 0


# --------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="napari-seccm",
        description="Scanning Electrochemical Cell Microscopy: scans, stores and the simulated rig.",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"napari-seccm {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the report's experiment on the simulated LLTO film")
    d.add_argument("--out", default="seccm-demo", help="output folder (a new run-NNN inside it)")
    d.add_argument("--config", default="seccm_simulated.cfg", help="Micro-Manager config")
    d.add_argument(
        "--pitch", type=_number("--pitch", "um"), default=0.3, help="map pitch, um (default 0.3)"
    )
    d.add_argument(
        "--iv-x", type=_number("--iv-x", "um"), default=0.0, help="x of the I-V landing, um"
    )
    d.add_argument(
        "--iv-y", type=_number("--iv-y", "um"), default=0.0, help="y of the I-V landing, um"
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument(
        "--max-hours",
        type=_number("--max-hours", "h", lo=0.0, lo_open=True, hi=MAX_HOURS_LIMIT),
        default=MAX_HOURS,
        help=f"refuse a map estimated to take longer, h (default {MAX_HOURS:g})",
    )
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("scan", help="run a scan plan into a new store")
    s.add_argument("--config", default="seccm_simulated.cfg", help="Micro-Manager config (.cfg)")
    s.add_argument("--plan", help="plan file (.yaml or .json); default: the built-in plan")
    s.add_argument("--out", required=True, help="the new store, e.g. map.seccm.zarr")
    s.add_argument("--overwrite", action="store_true", help="replace an existing store")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--max-hours",
        type=_number("--max-hours", "h", lo=0.0, lo_open=True, hi=MAX_HOURS_LIMIT),
        default=MAX_HOURS,
        help=f"refuse a plan estimated to take longer, h (default {MAX_HOURS:g}: "
        "catches a pitch typed 10x too small)",
    )
    s.set_defaults(func=cmd_scan)

    r = sub.add_parser("resume", help="measure the remaining points of an interrupted scan")
    r.add_argument("store")
    r.add_argument("--config", help="Micro-Manager config (default: the one the scan used)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_resume)

    i = sub.add_parser("info", help="status and counts of a store")
    i.add_argument("store")
    i.add_argument("--json", action="store_true", help="print a JSON object")
    i.set_defaults(func=cmd_info)

    ri = sub.add_parser(
        "remove-incomplete",
        help="remove a store caught mid-creation (no point measured); refuses anything else",
    )
    ri.add_argument("store")
    ri.set_defaults(func=cmd_remove_incomplete)

    pl = sub.add_parser("plan", help="write an example plan with every field, default and unit")
    pl.add_argument("--out", help="file to write (default: print)")
    pl.add_argument("--overwrite", action="store_true")
    pl.set_defaults(func=cmd_plan)

    g = sub.add_parser("gui", help="open napari with the SECCM widgets")
    g.set_defaults(func=cmd_gui)

    an = sub.add_parser(
        "analyze",
        help="stripes (period, angle), [100]/[001] conductance ratios, conductivity, topography",
        description="Stripes (period and angle, only when periodic contrast is significant), "
        "the [100]/[001] classes and ratios with 95 % intervals, conductivity, drift and "
        "topography. Warnings (JSON: warnings, a list of {code, message}) say when a number "
        "may mislead: no_periodic_contrast, possible_aliasing, ambiguous_period, "
        "footprint_exceeds_feature, classification_uncertain, boundary_lines, slow_drift, "
        "too_few_pixels.",
    )
    an.add_argument("store", help="a scan store (*.seccm.zarr)")
    an.add_argument("--json", action="store_true", help="print a JSON object")
    an.add_argument("--out", help="write the result to this file instead of printing it")
    an.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    an.add_argument(
        "--anisotropy",
        type=_number("--anisotropy", lo=0.0, lo_open=True),
        help="sigma_fast / sigma_slow of LLTO: adds each domain's fast-axis conductivity",
    )
    an.add_argument(
        "--min-period-um",
        type=_number("--min-period-um", "um", lo=0.0, lo_open=True),
        help="shortest stripe period searched, um",
    )
    an.add_argument(
        "--max-period-um",
        type=_number("--max-period-um", "um", lo=0.0, lo_open=True),
        help="longest stripe period searched, um",
    )
    an.add_argument(
        "--n-boot",
        type=_number("--n-boot", lo=1, integer=True, note="bootstrap resamples"),
        default=2000,
        help="accepted for older scripts and unused: the intervals come from the fits "
        "(noise, classification, drift and background models, footprint blending)",
    )
    _add_analysis_options(an)
    an.set_defaults(func=cmd_analyze)

    ex = sub.add_parser(
        "export",
        help="maps to Gwyddion (.gsf, .gwy), TIFF or PNG; the point table or the raw traces to CSV",
    )
    ex.add_argument("store", help="a scan store (*.seccm.zarr)")
    ex.add_argument(
        "--out", required=True, help="the file to write (never replaced without --overwrite)"
    )
    ex.add_argument(
        "--format",
        choices=("gsf", "gwy", "tiff", "csv", "png"),
        help="default: from the --out suffix (.gsf .gwy .tif .csv .png)",
    )
    ex.add_argument(
        "--channel",
        default="current",
        help="map for gsf/tiff/png: current, conductance, resistance, offset, r2, height, "
        "height_flat, spreading_conductance, conductivity, domains, quality "
        "(default current)",
    )
    ex.add_argument("--channels", help="comma-separated maps for gwy (default: all available)")
    ex.add_argument(
        "--traces",
        action="store_true",
        help="the raw traces as CSV instead of maps: one row per sample "
        "(point, row, col, x_um, y_um, status, t_s, E_V, I_A)",
    )
    ex.add_argument("--points", help="with --traces: comma-separated point indices (default: all)")
    ex.add_argument(
        "--potential",
        type=_number("--potential", "V"),
        metavar="E",
        help="a voltammetric store (LSV, CV, staircase): the current map at E (V), "
        "interpolated between the two samples around E",
    )
    ex.add_argument(
        "--segment",
        type=_number("--segment", lo=0, integer=True),
        metavar="K",
        help="with --potential: the sweep segment (0, 1, ... in program order; "
        "`napari-seccm info` lists them); default: the first that reaches E",
    )
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_analysis_options(ex)
    ex.set_defaults(func=cmd_export)

    im = sub.add_parser(
        "import",
        help="import other instruments' SECCM files (WEC-SPM TDMS, Park TIFF, HEKA .mat, "
        "eChemTips, CSV) into a new store",
        description="Reads the files, checks them, and writes a new *.seccm.zarr that opens, "
        "analyses and exports like a native scan; the store records where it came from "
        "(files with size and sha256, the source's header, what was inferred). Bad input "
        "writes nothing. See docs/importing.md.",
    )
    im.add_argument("files", nargs="+", help="the files of one scan (and companions)")
    im.add_argument("--out", required=True, help="the new store, e.g. map.seccm.zarr")
    im.add_argument(
        "--format",
        choices=("auto", "wec-tdms", "park-tiff", "heka-mat", "echemtips", "csv"),
        default="auto",
        help="default: from the suffix and content",
    )
    im.add_argument("--overwrite", action="store_true", help="replace an existing store")
    im.add_argument(
        "--pitch",
        type=_number("--pitch", "um", lo=0.0, lo_open=True),
        help="map pitch, um (default: the median nearest-neighbour spacing of the landings)",
    )
    im.add_argument(
        "--readout-window-s",
        type=_number("--readout-window-s", "s", lo=0.0),
        nargs=2,
        metavar=("START", "END"),
        help="the map value: mean current over [START, END) s from each landing's contact "
        "(default: each landing's last half)",
    )
    im.add_argument(
        "--current-channel",
        help="the current: TDMS channel (default 'Current1 (A)'), HEKA trace number (default 1)",
    )
    im.add_argument(
        "--potential-channel",
        help="the potential: TDMS channel (default 'V1 (V)'), HEKA trace number (default 2)",
    )
    im.add_argument(
        "--potential-V",
        dest="potential_V",
        type=_number("--potential-V", "V", lo=-100.0, hi=100.0),
        help="potential of a map whose files record none, V",
    )
    im.add_argument("--positions", help="HEKA: positions file (CSV x (um), y (um); or JSON)")
    im.add_argument(
        "--grid",
        type=_number("--grid", lo=1, integer=True, note="points"),
        nargs=2,
        metavar=("NX", "NY"),
        help="HEKA: the sweeps lie on an NX x NY grid at --pitch (rows from --origin up)",
    )
    im.add_argument("--grid-order", choices=("raster", "serpentine"), default="raster")
    im.add_argument(
        "--origin",
        type=_number("--origin", "um"),
        nargs=2,
        metavar=("X", "Y"),
        help="HEKA --grid: position of the first sweep, um (default 0 0)",
    )
    im.add_argument(
        "--columns",
        help="CSV: ROLE=COLUMN[@UNIT],... (roles x, y, z, t, E, I, value, point)",
    )
    im.add_argument(
        "--csv-shape",
        choices=("samples", "points"),
        help="CSV: one row per sample or per point (default: samples if a time column)",
    )
    im.add_argument(
        "--allow-shared-pixels",
        action="store_true",
        help="keep landings that fall into one map pixel (the map shows the later one)",
    )
    im.set_defaults(func=cmd_import)
    pf = sub.add_parser(
        "preflight",
        help="before a scan: noise, a threshold and its false-trigger rate, capacitance, aperture",
        description="Hold the probe in air and record the current at the plan's range and "
        "filter; suggest a threshold with its false-trigger rate; then (unless --no-landing) "
        "land once from where the probe is, step the potential, and estimate the capacitance "
        "and the pipette's aperture; the probe is retracted by the plan's retract.",
    )
    pf.add_argument("--config", default="seccm_simulated.cfg", help="Micro-Manager config (.cfg)")
    pf.add_argument("--plan", help="plan file (.yaml or .json); default: the built-in plan")
    pf.add_argument(
        "--noise-s",
        type=_number("--noise-s", "s", lo=0.05, hi=60.0),
        default=1.0,
        help="noise record in air, s (default 1)",
    )
    pf.add_argument("--no-landing", action="store_true", help="the noise part only: nothing moves")
    pf.add_argument(
        "--step-V",
        type=_number("--step-V", "V", lo=0.001, hi=1.0),
        default=0.2,
        help="potential step at the landing, V (default 0.2)",
    )
    pf.add_argument(
        "--steps",
        type=_number("--steps", "steps", lo=2, hi=200, integer=True),
        default=10,
        help="down-and-up step pairs at the landing (default 10)",
    )
    pf.add_argument(
        "--sample-ohm",
        type=_number("--sample-ohm", "Ohm", lo=0.0),
        default=None,
        help="the sample's series terms if known, Ohm (subtracted before the aperture; "
        "without: the aperture is a lower bound)",
    )
    pf.add_argument(
        "--target",
        type=_number("--target", "per approach", lo=0.0, hi=1.0, lo_open=True, hi_open=True),
        default=1e-3,
        help="false triggers per approach the suggested threshold allows (default 0.001)",
    )
    pf.add_argument("--json", action="store_true", help="the figures as JSON")
    pf.set_defaults(func=cmd_preflight)
    mv = sub.add_parser(
        "movie",
        help="a movie of the current map as the potential sweeps (voltammetric stores): GIF or MP4",
    )
    mv.add_argument("store", help="a scan store (*.seccm.zarr) measured with LSV, CV or staircase")
    mv.add_argument(
        "--out", required=True, help="map.gif or map.mp4 (never replaced without --overwrite)"
    )
    mv.add_argument(
        "--segment",
        type=_number("--segment", lo=0, integer=True),
        metavar="K",
        help="only this sweep segment (default: every segment, in program order)",
    )
    mv.add_argument(
        "--fps",
        type=_number("--fps", "frames/s", lo=0.1, hi=60.0),
        default=10.0,
        help="frames per second (default 10)",
    )
    mv.add_argument(
        "--frames",
        type=_number("--frames", lo=2, hi=2000, integer=True),
        default=40,
        help="frames per segment, evenly spaced in potential (default 40)",
    )
    mv.add_argument(
        "--clim",
        type=_number("--clim", "nA"),
        nargs=2,
        metavar=("LO", "HI"),
        help="colour scale limits, nA (default: 1st and 99th percentiles of every frame)",
    )
    mv.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    mv.set_defaults(func=cmd_movie)

    fh = sub.add_parser(
        "fake-hardware",
        help="rehearse a real-hardware config: start fake instruments and write a config "
        "that points at them",
        description="Reads the config's hardware hubs (PI, PalmSens, NI-DAQ), starts a fake "
        "of each that speaks its wire protocol (GCS over TCP or a pseudo-terminal, "
        "MethodSCRIPT over a pseudo-terminal, the NI gRPC device server), all on one simulated "
        "cell, and writes a copy of the config pointing at them. Serves until Ctrl-C.",
    )
    fh.add_argument("config", help="a real-hardware Micro-Manager config (shipped name or path)")
    fh.add_argument("--out", help="the rehearsal config to write (default: <config>-rehearsal.cfg)")
    fh.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    fh.set_defaults(func=cmd_fake_hardware)
    return p


def describe_error(e: BaseException) -> str:
    """One line per problem; a plan's validation errors name the field and value."""
    from pydantic import ValidationError

    from .acquisition.plan import validation_lines

    if isinstance(e, ValidationError):
        lines = validation_lines(e, field_prefix="plan field ", with_input=True)
        return "invalid plan:\n  " + "\n  ".join(lines)
    return str(e)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (
        ValueError,  # also a plan's ValidationError and PlanInputError, UnicodeDecodeError
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        RuntimeError,  # also RecursionError
        OverflowError,
    ) as e:
        # bad input: a clear message, nothing changed
        print(f"error: {describe_error(e)}", file=sys.stderr)
        return 2
    finally:
        import gc

        gc.collect()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
