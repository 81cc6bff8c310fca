"""Run, resume and watch a hopping scan: plan + store + engine + the core's MDA runner.

``Scan`` ties the pieces together. ``scan.run()`` blocks (scripts, the CLI);
``scan.start()`` runs on a thread (widgets) and returns at once. Either way
the core's MDA runner drives the engine, so ``core.mda.set_paused`` /
``core.mda.cancel`` and the runner's signals work as usual.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import signal
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model.errors import InstrumentError
from .engine import DeviceFault, HoppingEngine
from .plan import ScanPlan, check_plan_against_core
from .store import ScanStore, StoreWriter, _now_iso

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pymmcore_plus import CMMCorePlus
    from useq import MDAEvent

log = logging.getLogger(__name__)


#: properties that change while a rig runs (positions, readings, clocks): not
#: a difference between rigs
_VOLATILE = (
    "Position",
    "Current_A",
    "SimTime_s",
    "InstrumentTime_s",
    "LastTrace",
    "LastError",
    "Pipette_State",
    "ProbeHealth",
    "Interlock_MinZ_um",
    "EmergencyStop",
)
#: settings every scan sets from its plan (the same in every session)
_SET_BY_SCAN = (
    "Potential_V",
    "Cell",
    "Waveform",
    "Acquire",
    "Approach",
    "SampleRate_Hz",
    "Filter_Hz",
    "CurrentRange_A",
    "Speed_um_per_s",
)


def rig_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two rig snapshots: the config file, and device
    settings (not positions, readings or clocks), one line each."""
    out = []
    if before.get("config_file") != after.get("config_file"):
        out.append(f"config {before.get('config_file')!r} -> {after.get('config_file')!r}")
    elif before.get("config_text") != after.get("config_text"):
        out.append(f"config file {after.get('config_file')!r} was edited")
    b_dev, a_dev = before.get("devices", {}), after.get("devices", {})
    for dev in sorted(set(b_dev) | set(a_dev)):
        if dev not in a_dev or dev not in b_dev:
            out.append(f"device {dev} {'removed' if dev not in a_dev else 'added'}")
            continue
        derived = set(after.get("read_only", {}).get(dev, ()))  # readings, not settings
        for prop in sorted(set(b_dev[dev]) & set(a_dev[dev]) - derived):
            if prop.startswith(_VOLATILE + _SET_BY_SCAN) or "Position" in prop:
                continue
            if b_dev[dev][prop] != a_dev[dev][prop]:
                out.append(f"{dev} {prop} {b_dev[dev][prop]!r} -> {a_dev[dev][prop]!r}")
    return out


def rig_snapshot(core: CMMCorePlus) -> dict[str, Any]:
    """Every device property with a plain value, and the config file's text."""
    devices: dict[str, dict[str, Any]] = {}
    read_only: dict[str, list[str]] = {}
    for dev in core.getLoadedDevices():
        props: dict[str, Any] = {}
        for prop in core.getDevicePropertyNames(dev):
            try:
                val = core.getProperty(dev, prop)
                if core.isPropertyReadOnly(dev, prop):
                    read_only.setdefault(dev, []).append(prop)
            except Exception:
                continue
            if isinstance(val, (np.generic,)):
                val = val.item()
            if isinstance(val, (str, int, float, bool)):
                if isinstance(val, float) and not math.isfinite(val):
                    val = str(val)
                props[prop] = val
        devices[dev] = props
    cfg_text = ""
    with contextlib.suppress(Exception):
        cfg = core.systemConfigurationFile()
        if cfg and Path(cfg).exists():
            cfg_text = Path(cfg).read_text()
    from .control import simulated_devices

    return {
        "devices": devices,
        "read_only": read_only,
        #: the devices that said they are a simulation: no sample was measured
        "simulated": simulated_devices(core),
        "config_file": core.systemConfigurationFile() or "",
        "config_text": cfg_text,
        "roles": {
            "xy_stage": core.getXYStageDevice(),
            "focus": core.getFocusDevice(),
            "camera": core.getCameraDevice(),
        },
    }


#: how long the exit waits for a canceled scan to retract and flush (s)
EXIT_TIMEOUT_S = 60.0
#: how long anything waits for a scan to close its store after an emergency
#: stop (s): nothing is retracted then, so a scan that takes longer is stuck
#: in a device call and is left as it is (its store stays resumable)
ESTOP_TIMEOUT_S = 10.0
#: what SIGHUP and SIGTERM do to a running scan (the API; the CLI has its own)
GRACEFUL_SIGNALS = ("SIGHUP",)  # cancel: abort the step, retract, cell off, save
EMERGENCY_SIGNALS = ("SIGTERM",)  # emergency stop: halt at once, cell off, latch


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _in_background(func: Callable[..., Any], *args: Any) -> threading.Thread:
    """Run ``func`` on a short-lived thread. Signal handlers hand their work
    over this way: a handler runs on the main thread between two bytecodes,
    possibly while that thread holds a device's or the MDA runner's lock (which
    are not re-entrant), so it must not call the core itself."""
    t = threading.Thread(target=func, args=args, name="seccm-signal", daemon=True)
    t.start()
    return t


class _SignalGuard:
    """SIGHUP / SIGTERM handlers of one running scan (installed on the main
    thread only, and only over a handler that is not ``SIG_IGN``).

    SIGHUP cancels the scan (the step in progress aborted, the pipette
    retracted, the cell off, the store closed ``canceled``); SIGTERM triggers
    the emergency stop (everything halts at once, cells off, latched; the store
    closed ``fault``). Once the scan has ended safely the previous handlers are
    put back and each signal received is delivered to them, so the process
    still ends as the sender asked: the default action ends it by that signal,
    a Python handler is called with it."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.previous: dict[int, Any] = {}
        self.received: list[int] = []
        self.delivered: set[int] = set()
        self.helpers: list[threading.Thread] = []
        #: the scan runs on the main thread (run()): the handler must return at
        #: once; with start() the handler waits for the scan to end safely
        self.scan_on_main = False

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        for name in GRACEFUL_SIGNALS + EMERGENCY_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is None:  # no SIGHUP on Windows
                continue
            try:
                prev = signal.getsignal(sig)
                # ignored on purpose (nohup), or set outside Python: not ours to change
                if prev in (signal.SIG_IGN, None):
                    continue
                signal.signal(sig, self._handle)
            except (ValueError, OSError):
                continue
            self.previous[sig] = prev
        return bool(self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        scan = self.scan
        name = _signal_name(signum)
        if scan._ended.is_set():  # the scan is over: behave as if never installed
            self.received.append(signum)
            self.finish()
            return
        first = not self.received
        self.received.append(signum)
        if name in EMERGENCY_SIGNALS:
            log.error("%s during a scan: emergency stop (%s)", name, scan.store.path)
            self.helpers.append(_in_background(scan.emergency_stop, f"{name} received"))
        elif first:
            log.warning(
                "%s during a scan: canceling %s (the step in progress is aborted, the pipette "
                "retracted, the cell switched off, the points saved)",
                name,
                scan.store.path,
            )
            self.helpers.append(_in_background(scan.cancel, f"stopped by {name}"))
        if self.scan_on_main:
            return  # run() finishes the scan, then calls finish()
        # the scan runs on its thread: wait here until it has ended safely
        # (polling: an Event.wait could deadlock on a lock this thread holds)
        limit = ESTOP_TIMEOUT_S if scan._estop_reason else EXIT_TIMEOUT_S
        t_end = time.monotonic() + limit
        while not scan._ended.is_set() and time.monotonic() < t_end:
            time.sleep(0.02)
        self.finish()

    def finish(self) -> None:
        """The scan is over (or the wait for it is): restore the previous
        handlers, then deliver each signal received to them."""
        for t in self.helpers:
            t.join(5.0)  # the emergency stop's calls, before anything ends
        self.restore()
        for signum in dict.fromkeys(self.received):
            if signum in self.delivered:
                continue
            self.delivered.add(signum)
            prev = self.previous.get(signum, signal.SIG_DFL)
            if callable(prev):
                prev(signum, None)
            elif prev == signal.SIG_DFL:
                log.warning("the scan has ended; ending the process (%s)", _signal_name(signum))
                with contextlib.suppress(Exception):
                    logging.shutdown()
                os.kill(os.getpid(), signum)  # the default action: ends the process

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, prev in list(self.previous.items()):
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(sig) == self._handle:  # not if someone replaced ours
                    signal.signal(sig, prev)
        # keep self.previous: finish() still delivers to them


def _at_exit(method: weakref.WeakMethod) -> None:
    """Call ``method`` (if its object still lives) when the interpreter exits,
    early enough that the scan can still finish cleanly: before the thread
    pools that zarr writes through shut down (threading's exit hooks, run in
    reverse order of registration, so before those of pools created earlier)
    and before the core's atexit hook unloads its devices."""

    def hook() -> None:
        func = method()
        if func is not None:
            func()

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(hook)
            return
        except RuntimeError:  # already shutting down
            pass
    atexit.register(hook)


class Scan:
    """One scan into one store.

    Parameters
    ----------
    core : the loaded Micro-Manager core (any CMMCorePlus / UniMMCore).
    store : a writable :class:`ScanStore` (see :meth:`create` and :meth:`resume`).
    """

    def __init__(self, core: CMMCorePlus, store: ScanStore) -> None:
        self.core = core
        self.store = store
        self.plan = store.plan()
        self.engine: HoppingEngine | None = None
        self.writer: StoreWriter | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.final_status: str | None = None
        self._cancel = threading.Event()
        self._late_interrupt: BaseException | None = None
        #: set before the scan starts and cleared at the very end of run():
        #: not the thread's is_alive(), which on Python 3.11 reads False once a
        #: Ctrl-C has interrupted a join() of it (the at-exit cancel was skipped)
        self._running = False
        self._ended = threading.Event()
        self._run_thread: threading.Thread | None = None
        self._signals: _SignalGuard | None = None
        #: why the scan was canceled (the store's reason), if not by the user
        self._cancel_reason = ""
        #: why the emergency stop was triggered through this scan, if it was
        self._estop_reason = ""
        #: how long the at-exit cancel waits for the scan to end safely (s)
        self.exit_timeout_s = EXIT_TIMEOUT_S
        self.pending = np.flatnonzero(~store.done_mask())
        self.n_total = store.n_points
        self._done_before = self.n_total - self.pending.size
        #: how the rig of a resumed session differs from the scan's first rig
        self.rig_changes: list[str] = []

    # -------------------------------------------------------- constructors
    @classmethod
    def create(
        cls, core: CMMCorePlus, plan: ScanPlan, path: str | Path, *, overwrite: bool = False
    ) -> Scan:
        """Check the plan against the rig, then create the store (nothing moves)."""
        check_plan_against_core(plan, core)
        ScanStore.check_creatable(path, overwrite=overwrite)  # before touching the rig
        store = ScanStore.create(path, plan, rig=rig_snapshot(core), overwrite=overwrite)
        return cls(core, store)

    @classmethod
    def resume(cls, core: CMMCorePlus, path: str | Path) -> Scan:
        """Reopen an interrupted or canceled scan to measure its remaining points.

        Nothing on the rig is touched until the whole store has been checked
        (:meth:`ScanStore.validate`: every array and chunk, and that its plan
        still gives exactly the recorded points); a store that is damaged,
        does not match its plan or was caught mid-creation is refused
        (:class:`~napari_seccm.acquisition.store.StoreDamagedError`,
        :class:`~napari_seccm.acquisition.store.StoreIncompleteError`)."""
        store = ScanStore.open(path, mode="r+")  # validates the whole store
        try:
            if store.meta["status"] == "complete":
                raise ValueError(f"{path} is already complete; nothing to resume")
            check_plan_against_core(store.plan(), core)
            return cls(core, store)
        except BaseException:
            store.close()
            raise

    # ------------------------------------------------------------- running
    @property
    def points_done(self) -> int:
        return self._done_before + (self.engine.points_done if self.engine else 0)

    def _events(self) -> Iterator[MDAEvent]:
        from useq import MDAEvent

        pts = self.points
        for i in self.pending:
            if self._cancel.is_set():  # canceled before the runner could be
                return
            yield MDAEvent(
                index={"p": int(i)},
                x_pos=float(pts.x_um[i]),
                y_pos=float(pts.y_um[i]),
            )

    def _prepare(self) -> None:
        store = self.store
        self.points = self.plan.points()  # one copy, shared with the engine
        done = store.done_mask()
        prev = tuple(store.array(f"results/{k}")[:][done] for k in ("x_um", "y_um", "contact_z_um"))
        meta = store.meta
        self._base_instrument_s = store.instrument_time_s()
        self._base_wall_s = float(meta.get("wall_time_s", 0.0))
        self._t_wall0 = time.perf_counter()
        self._last_checkpoint = time.monotonic()
        self.writer = StoreWriter(store, on_batch=self._checkpoint)
        self.engine = HoppingEngine(
            self.core,
            self.plan,
            self.writer,
            points=self.points,
            previous_landings=prev,
            time_offset_s=self._base_instrument_s,
        )
        sessions = list(meta.get("sessions", []))
        session: dict[str, Any] = {
            "started": _now_iso(),
            "points_pending": int(self.pending.size),
        }
        if sessions:  # a resume: which rig measures the rest, and how it differs
            snap = rig_snapshot(self.core)
            session["rig"] = snap
            changes = rig_changes(meta.get("rig", {}), snap)
            if changes:
                session["rig_changes"] = changes
                self.rig_changes = changes
                log.warning("resuming %s on a different rig: %s", store.path, "; ".join(changes))
        sessions.append(session)
        store.update_meta(
            status="running",
            reason="",
            started=meta.get("started") or _now_iso(),
            sessions=sessions,
        )

    def _checkpoint(self, batch: list[Any]) -> None:
        """On the writer thread: keep the times in the metadata current (every
        ~2 s), so a killed scan still reports the time it spent."""
        now = time.monotonic()
        if now - self._last_checkpoint < 2.0:
            return
        self._last_checkpoint = now
        t_last = max(r.t_start_s for r in batch)
        self.store.update_meta(
            instrument_time_s=max(t_last, self._base_instrument_s),
            wall_time_s=self._base_wall_s + (time.perf_counter() - self._t_wall0),
        )

    def run(self, *, handle_signals: bool = True) -> str:
        """Run to the end in this thread; returns the final status.

        Ctrl-C (KeyboardInterrupt) aborts the step in progress, retracts the
        pipette, switches the cell off, closes the store ``canceled`` and is
        then re-raised. On the main thread, with ``handle_signals``, SIGHUP
        does the same and SIGTERM triggers the emergency stop (the store is
        closed ``fault``); the previous handlers are restored afterwards and
        the signal handed to them, so by default the process then ends by it.
        """
        self._running = True
        self._run_thread = threading.current_thread()
        guard = None
        if handle_signals and self._signals is None:
            guard = _SignalGuard(self)
            guard.scan_on_main = True
            if guard.install():
                self._signals = guard
            else:
                guard = None
        try:
            return self._run()
        finally:
            self._running = False
            self._ended.set()
            if guard is not None:
                guard.finish()  # may end the process, as the signal's sender asked

    def _run(self) -> str:
        self._prepare()
        assert self.engine is not None and self.writer is not None
        mda = self.core.mda
        old_engine = mda.set_engine(self.engine)
        t_wall = time.perf_counter()
        interrupt: BaseException | None = None
        try:
            mda.run(self._events())
        except BaseException as e:  # the runner re-raises after its teardown
            self.error = e
            if isinstance(e.__cause__, (KeyboardInterrupt, SystemExit)):
                interrupt = e.__cause__  # raised in a hop: the runner tore down
            elif not isinstance(e, Exception):
                interrupt = e  # raised in the runner itself: it did not
                self._recover_runner()
        finally:
            with contextlib.suppress(RuntimeError):
                mda.set_engine(old_engine)
            self._finish(time.perf_counter() - t_wall)
        interrupt = interrupt or self._late_interrupt
        if interrupt is not None:
            raise interrupt  # the store is closed and the rig safe: now stop the caller
        return self.final_status or "error"

    def _recover_runner(self) -> None:
        """An interrupt outside the engine skipped the runner's teardown: make
        the rig safe and let the runner finish (it would stay 'running')."""
        from useq import MDASequence

        mda = self.core.mda
        try:
            if mda.is_running():
                mda._finish_run(MDASequence())  # calls the engine's teardown
            elif self.engine is not None:
                self.engine.teardown_sequence(MDASequence())
        except Exception as e:
            if self.engine is not None:
                self.engine.teardown_problems = [f"teardown after the interrupt failed: {e}"]

    def start(self, *, handle_signals: bool = True) -> None:
        """Run on a background thread (for GUIs); returns at once.

        If the program exits while the scan runs (napari closed, a script
        ends, Ctrl-C in a script that waits for it), the scan is canceled at
        exit: the step in progress is aborted, the pipette retracted, the cell
        switched off and every measured point written before the process ends.
        Called on the main thread with ``handle_signals``, SIGHUP and SIGTERM
        are handled while the scan runs, as in :meth:`run`.
        """
        if self._thread is not None or self._running or self._ended.is_set():
            raise RuntimeError("this scan has already been started")
        self._thread = threading.Thread(
            target=self.run, kwargs={"handle_signals": False}, name="seccm-scan", daemon=True
        )
        _at_exit(weakref.WeakMethod(self._cancel_at_exit))
        self._running = True  # before the thread starts: is_running() at once
        if handle_signals:
            guard = _SignalGuard(self)
            if guard.install():
                self._signals = guard
        try:
            self._thread.start()
        except BaseException:
            self._running = False
            self._ended.set()
            self._restore_signals()
            raise

    def _restore_signals(self) -> None:
        """Put back the signal handlers of before the scan (main thread only)."""
        if self._signals is not None and self._ended.is_set():
            self._signals.restore()

    def _cancel_at_exit(self) -> None:
        if self.is_running():
            log.warning("exiting during a scan: canceling %s", self.store.path)
            with contextlib.suppress(Exception):
                self.cancel("canceled at exit: the program ended during the scan")
            timeout = min(self.exit_timeout_s, ESTOP_TIMEOUT_S if self._estop_reason else math.inf)
            with contextlib.suppress(KeyboardInterrupt):  # at exit: nothing to raise it to
                self._wait_until_safe(timeout)
        self._restore_signals()

    def wait(self, timeout: float | None = None) -> str | None:
        """Wait until the scan has ended (at most ``timeout`` s); its final
        status, or None while it still runs.

        Ctrl-C while waiting cancels the scan (the step in progress aborted,
        the pipette retracted, the cell off, the store closed ``canceled``),
        waits for that, then re-raises; a second Ctrl-C meanwhile triggers the
        emergency stop."""
        if not self._running and not self._ended.is_set():
            return self.final_status  # never started
        if self._running and threading.current_thread() is self._run_thread:
            raise RuntimeError("a scan cannot wait for itself (called from its own thread)")
        try:
            self._ended.wait(timeout)
        except KeyboardInterrupt:
            log.warning(
                "interrupted: canceling the scan %s (the step in progress is aborted, the "
                "pipette retracted, the cell switched off, the points saved); interrupt "
                "again for the emergency stop",
                self.store.path,
            )
            self.cancel("interrupted (KeyboardInterrupt) while waiting for the scan")
            self._wait_until_safe(self.exit_timeout_s)
            raise
        self._restore_signals()
        return self.final_status

    def _wait_until_safe(self, timeout: float) -> bool:
        """After a cancel: wait for the scan to end; a Ctrl-C meanwhile triggers
        the emergency stop, and then the wait is short. True if it ended."""
        try:
            return self._ended.wait(timeout)
        except KeyboardInterrupt:
            self.emergency_stop("a second interrupt (KeyboardInterrupt) while the scan stopped")
            return self._ended.wait(min(timeout, ESTOP_TIMEOUT_S))

    def is_running(self) -> bool:
        """True from :meth:`start` (or the call of :meth:`run`) until the scan
        has ended: the pipette retracted (or the emergency stop latched), the
        cell off and the store closed."""
        if not self._running:
            self._restore_signals()
        return self._running

    def cancel(self, reason: str | None = None) -> None:
        """Stop now: the step in progress (a move, the approach, the program) is
        aborted, the point is not recorded, the pipette retracted, data flushed.

        Also before the first point: a scan canceled while it is still being
        prepared measures nothing. ``reason`` replaces "stopped by the user"
        in the store's reason."""
        if reason and not self._cancel_reason:
            self._cancel_reason = reason
        self._cancel.set()
        if self.engine is not None:
            self.engine.abort.set()  # abort the step in progress, not only the next one
        self.core.mda.cancel()

    def emergency_stop(self, reason: str = "emergency stop") -> list[str]:
        """Halt everything now and latch (:func:`napari_seccm.emergency_stop`):
        every motion and waveform aborted at once, every cell off, and nothing
        moves until :func:`napari_seccm.reset_emergency_stop`. The scan ends
        with status ``fault`` without retracting; every point measured is kept.
        From any thread; returns what was done, one line per device."""
        from .control import emergency_stop

        if not self._estop_reason:
            self._estop_reason = reason
        try:
            # latch first: told to stop before the latch, the engine would
            # start its retract, and a move started before the latch is not
            # refused by it
            return emergency_stop(self.core, reason)
        finally:
            self._cancel.set()
            eng = self.engine
            if eng is not None:
                eng.abort.set()
                # also if a device gave no event for the latch (a hub whose
                # property change is not announced): the engine must know
                eng.emergency_stopped()

    def set_paused(self, paused: bool) -> None:
        """Pause after the point in progress (the pipette waits retracted)."""
        self.core.mda.set_paused(paused)

    def _finish(self, wall_s: float) -> None:
        eng, store = self.engine, self.store
        write_error: BaseException | None = None
        try:
            if self.writer is not None:
                self.writer.close()
        except BaseException as e:
            write_error = e
            if not isinstance(e, Exception):  # Ctrl-C while flushing: finish, then stop
                self._late_interrupt = e
        reason_parts = []
        status = "complete"
        finish = self.core.mda.status.finish_reason
        err0 = self.error
        interrupted = err0 is not None and (
            not isinstance(err0, Exception)
            or isinstance(err0.__cause__, (KeyboardInterrupt, SystemExit))
        )
        if interrupted and write_error is None:
            status = "canceled"
            cause = err0.__cause__ if isinstance(err0, Exception) else err0
            reason_parts.append(
                f"interrupted ({type(cause).__name__}); the pipette was retracted and the "
                "cell switched off"
            )
        elif self.error is not None or write_error is not None or (eng and eng.error):
            err = self.error or write_error or (eng.error if eng else None)
            # a device that missed a deadline, failed, gave untrusted readings
            # or was emergency-stopped: a fault of the rig, not of the software
            status = "fault" if isinstance(err, (DeviceFault, InstrumentError)) else "error"
            reason_parts.append(f"{type(err).__name__}: {err}")
        elif (self._cancel.is_set() or (finish is not None and str(finish) == "canceled")) and (
            store.done_mask().sum() < store.n_points
        ):
            status = "canceled"
            reason_parts.append(self._cancel_reason or "stopped by the user")
        elif store.done_mask().sum() < store.n_points:
            status = "canceled"
            reason_parts.append("stopped before all points were measured")
        if eng is not None:
            problems = getattr(eng, "teardown_problems", [])
            if problems and status in ("complete", "canceled"):
                # the data are whole, but the rig may not be safe: never 'complete'
                status = "fault"
            reason_parts.extend(problems)
            reason_parts.extend(getattr(eng, "notes", []))
        if self._estop_reason:
            # latched: nothing was retracted after it, whatever else happened
            status = "fault"
            reason_parts.insert(
                0,
                f"emergency stop ({self._estop_reason}): halted where it was, the cell "
                "switched off, latched until reset",
            )
        meta = store.meta
        inst = self._base_instrument_s
        if eng is not None and hasattr(eng, "_t0_wall"):
            inst += eng.instrument_time_s() - eng._t0_instrument
        sessions = list(meta.get("sessions", []))
        if sessions:
            sessions[-1]["ended"] = _now_iso()
            sessions[-1]["status"] = status
        store.update_meta(
            status=status,
            reason="; ".join(reason_parts),
            ended=_now_iso(),
            instrument_time_s=inst,
            wall_time_s=self._base_wall_s + wall_s,
            sessions=sessions,
        )
        store.close()
        self.final_status = status


def run_scan(
    core: CMMCorePlus,
    plan: ScanPlan,
    path: str | Path,
    *,
    overwrite: bool = False,
    on_point: Callable[[int, int], None] | None = None,
) -> Scan:
    """Create the store and run the whole scan (blocking). Returns the finished Scan."""
    scan = Scan.create(core, plan, path, overwrite=overwrite)

    def _progress(*_: Any) -> None:
        if on_point is not None:
            on_point(scan.points_done, scan.n_total)

    if on_point is not None:
        core.mda.events.frameReady.connect(_progress)
    try:
        scan.run()
    finally:
        if on_point is not None:
            core.mda.events.frameReady.disconnect(_progress)
    return scan
