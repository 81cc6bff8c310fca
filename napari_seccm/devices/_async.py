"""Micro-Manager's asynchronous convention for Python devices.

A move, an approach or a waveform *starts* and the call returns at once;
``busy()`` is true until it has ended; ``stop()`` aborts it. UniMMCore runs every
device call under the device's lock, so a device that blocked inside a call
would also block every ``busy()`` poll and every other client; ``core.stop()``
takes no lock, which is how an abort reaches a device while another thread
waits on it.

:class:`DeviceWorker` is the device-owned thread that carries one operation
at a time. An operation is a callable ``op(abort)`` that blocks until the
hardware (or the simulator) has finished, returning early once the
``abort`` event is set. Its outcome (value or exception) is kept for the
device to report.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)


class DeviceBusyError(RuntimeError):
    """A new operation was started while the device was still carrying out one."""


class OperationAborted(RuntimeError):
    """The operation was stopped (``stop()``, an abort, the emergency stop)
    before it had ended."""


class DeviceWorker:
    """One daemon thread per device, running one operation at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._job: (
            tuple[
                Callable[[threading.Event], Any], Callable[[Any, BaseException | None], None] | None
            ]
            | None
        ) = None
        self._busy = False
        self._closed = False
        self._abort = threading.Event()
        self._done = threading.Event()
        self._done.set()
        #: what the last operation was and how it ended
        self.last_what = ""
        self.last_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def start(
        self,
        what: str,
        op: Callable[[threading.Event], Any],
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        """Begin ``op(abort)`` on the worker. When it has ended,
        ``on_done(result, error)`` runs on the worker before ``busy()`` turns
        false (to publish results); if it returns a callable, that runs after
        (to announce the end through events)."""
        with self._cond:
            self._begin(what)
            self._job = (op, on_done)
            self._ensure_thread()
            self._cond.notify()

    def run_inline(
        self,
        what: str,
        op: Callable[[threading.Event], Any],
        on_done: Callable[[Any, BaseException | None], None] | None = None,
    ) -> None:
        """Carry out ``op`` in the caller's thread, with the same bookkeeping as
        :meth:`start`: for an operation that takes no time (a simulator in fast
        mode), where handing it to the worker would cost more than the work."""
        with self._lock:
            self._begin(what, inline=True)
        self._finish(op, on_done, inline=True)

    def _begin(self, what: str, inline: bool = False) -> None:
        """Mark the device busy with ``what`` (under ``self._lock``), or refuse."""
        if self._closed:
            raise RuntimeError(f"{self.name}: the device has been shut down")
        if self._busy:
            raise DeviceBusyError(
                f"{self.name} is still busy ({self.last_what}); wait for it or stop it first"
            )
        self._busy = True
        if not inline:  # an inline operation has ended before anyone could wait
            self._done.clear()
        if self._abort.is_set():
            self._abort.clear()
        self.last_what = what
        self.last_error = None

    def busy(self) -> bool:
        return self._busy

    def abort(self) -> None:
        """Ask the operation in progress to end now (takes no lock)."""
        self._abort.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until idle (for tests and shutdown); False on timeout."""
        return self._done.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        self.abort()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self.wait(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._job is None:
                    return
                op, on_done = self._job
                self._job = None
            self._finish(op, on_done)

    def _finish(
        self,
        op: Callable[[threading.Event], Any],
        on_done: Callable[[Any, BaseException | None], None] | None,
        inline: bool = False,
    ) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = op(self._abort)
        except BaseException as e:  # reported through the device, never lost
            error = e
            log.warning("%s: %s failed: %s", self.name, self.last_what, e)
        if error is None and self._abort.is_set() and not inline:
            # stopped before its end: not a success (a script waiting for the
            # device must not take a cut-short move for a finished one)
            error = OperationAborted(f"{self.last_what} was stopped before its end")
        self.last_error = error
        announce = None
        if on_done is not None:
            try:
                announce = on_done(result, error)
            except Exception:
                log.exception("%s: completion of %s failed", self.name, self.last_what)
        with self._lock:
            self._busy = False
        if not inline:
            self._done.set()
        # events go out once the device is idle: a listener may chain the next
        # operation or read the device from its callback
        if callable(announce):
            try:
                announce()
            except Exception:
                log.exception("%s: announcing the end of %s failed", self.name, self.last_what)
