"""The hop in progress, for a live plot: a bounded ring buffer of samples
(time, Z, current) that the engine fills and a GUI timer reads.

The engine pushes what it learns as it learns it (each Z move's end, an
approach's samples while it comes down, through :class:`ApproachFeed`, the
measurement program's once the potentiostat has them), so pushing never waits
on anything but a short lock, and a reader (:meth:`LiveTrace.latest`) copies the last seconds out
without ever holding up the acquisition thread for longer than that copy.
Memory is fixed (``capacity`` samples); the oldest samples are overwritten.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

#: samples kept (3 x float64 each: 4.8 MB)
CAPACITY = 200_000
#: a buffer read within this many seconds is being watched (s)
WATCH_S = 3.0


class LiveTrace:
    """Thread-safe ring buffer of (t_s, z_um, I_A) samples."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = int(capacity)
        self._buf = np.full((3, self.capacity), np.nan)
        self._n = 0  # samples ever pushed
        self._lock = threading.Lock()
        self._read_at = -math.inf  # time.monotonic() of the last read
        #: the pushed current of largest magnitude (A; NaN before any), kept
        #: as samples arrive so that a readout never scans the whole ring
        self.peak_current_A = math.nan

    @property
    def watched(self) -> bool:
        """Has anyone read the buffer in the last ``WATCH_S`` seconds? A writer
        can skip the work of pushing (reading the instrument clock, copying
        traces) for a plot nobody shows: a scan from the command line."""
        return time.monotonic() - self._read_at < WATCH_S

    @property
    def version(self) -> int:
        """Changes whenever samples are pushed (the number pushed so far)."""
        return self._n

    def push(self, t_s: np.ndarray, z_um: np.ndarray, current_A: np.ndarray) -> None:
        t = np.asarray(t_s, dtype=float).ravel()
        z = np.broadcast_to(np.asarray(z_um, dtype=float), t.shape).ravel()
        i = np.broadcast_to(np.asarray(current_A, dtype=float), t.shape).ravel()
        m = t.size
        if m == 0:
            return
        self._note_peak(i)
        if m > self.capacity:  # only the newest fit
            skipped, m = m - self.capacity, self.capacity
            t, z, i = t[-m:], z[-m:], i[-m:]
        else:
            skipped = 0
        with self._lock:
            start = (self._n + skipped) % self.capacity
            first = min(m, self.capacity - start)
            for row, v in enumerate((t, z, i)):
                self._buf[row, start : start + first] = v[:first]
                self._buf[row, : m - first] = v[first:]
            self._n += skipped + m

    def _note_peak(self, current_A: np.ndarray) -> None:
        ok = current_A[np.isfinite(current_A)]
        if ok.size:
            k = ok[int(np.argmax(np.abs(ok)))]
            if not abs(k) <= abs(self.peak_current_A):  # also when the peak is NaN
                self.peak_current_A = float(k)

    def push_one(self, t_s: float, z_um: float, current_A: float) -> None:
        if math.isfinite(current_A) and not abs(current_A) <= abs(self.peak_current_A):
            self.peak_current_A = float(current_A)
        with self._lock:
            k = self._n % self.capacity
            self._buf[:, k] = (t_s, z_um, current_A)
            self._n += 1

    def latest(self, window_s: float) -> np.ndarray:
        """Rows [t_s, z_um, I_A] of the samples of the last ``window_s``
        seconds (of the newest sample's time), oldest first."""
        self._read_at = time.monotonic()
        with self._lock:
            n = min(self._n, self.capacity)
            if n == 0:
                return np.empty((3, 0))
            cap = self.capacity
            start = (self._n - n) % cap  # ring position of the oldest sample
            t_last = self._buf[0, (start + n - 1) % cap]
            first = 0
            if math.isfinite(window_s) and math.isfinite(t_last):
                # the samples are in time order: bisect for the window's first
                # one and copy only the window (not the whole ring) under the lock
                lo, hi, cut = 0, n - 1, t_last - window_s
                while lo < hi:
                    mid = (lo + hi) // 2
                    if self._buf[0, (start + mid) % cap] >= cut:
                        hi = mid
                    else:
                        lo = mid + 1
                first = lo
            a, m = (start + first) % cap, n - first
            if a + m <= cap:
                return self._buf[:, a : a + m].copy()
            return np.concatenate((self._buf[:, a:], self._buf[:, : a + m - cap]), axis=1)


#: how often the samples of an approach in progress are asked for, s
FEED_PERIOD_S = 1 / 15


class ApproachFeed:
    """The samples of one approach into a :class:`LiveTrace` while it comes
    down, each once.

    ``read()`` returns the samples recorded so far (the Z stage's
    ``Approach_Progress``: rows [t_s, z_um, I_A], each read holding the last
    one's and those recorded since); :meth:`poll` pushes the new ones, at most
    every ``period_s`` of wall time, and :meth:`finish` those of the final
    trace (``Approach_Trace``) not pushed yet. Times go on the live axis from
    ``t0_s`` (the first sample's time there). With ``live`` None it pushes
    nothing (nobody watches the buffer).
    """

    def __init__(
        self,
        live: LiveTrace | None,
        t0_s: float,
        read: Callable[[], Any] | None = None,
        period_s: float = FEED_PERIOD_S,
    ) -> None:
        self.live = live
        self.t0_s = float(t0_s)
        self._read = read
        self.period_s = period_s
        #: samples of this approach pushed so far
        self.pushed = 0
        self._t_first = math.nan
        self._next = 0.0

    def poll(self) -> None:
        """Push what was recorded since the last poll (when ``period_s`` has passed)."""
        if self._read is None:
            return
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.period_s
        self.add(self._read())

    def finish(self, trace: Any) -> None:
        """The approach has ended: push what of its trace was not pushed."""
        self.add(trace)

    def add(self, rows: Any) -> None:
        if self.live is None:  # nobody watches: nothing to push
            return
        if not isinstance(rows, np.ndarray) or rows.ndim != 2 or rows.shape[0] != 3:
            return  # a C++ adapter's text, or nothing
        n = rows.shape[1]
        if n <= self.pushed:
            return
        if self.pushed == 0:
            self._t_first = float(rows[0, 0])
        new = rows[:, self.pushed :]
        self.live.push(self.t0_s + new[0] - self._t_first, new[1], new[2])
        self.pushed = n


def decimate_minmax(t: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 n_bins`` points that draw like ``(t, y)`` at a width of
    ``n_bins`` pixels: the minimum and maximum of each bin, in time order
    (spikes survive, unlike a stride). NaNs are left out of a bin."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size <= 2 * n_bins or n_bins < 1:
        return t, y
    edges = np.linspace(t[0], t[-1], n_bins + 1)
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
    starts = np.flatnonzero(np.concatenate(([True], b[1:] != b[:-1])))
    mins = np.minimum.reduceat(y, starts)
    maxs = np.maximum.reduceat(y, starts)
    ends = np.concatenate((starts[1:], [y.size])) - 1
    tt = np.column_stack((t[starts], t[ends])).ravel()
    yy = np.column_stack((mins, maxs)).ravel()
    return tt, yy
