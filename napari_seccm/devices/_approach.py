"""The software approach: a Z stage descends while another controller's
current is watched, and the stage is halted on contact.

For a stage controller that cannot see the current itself (a PI piezo
controller): the descent is one closed-loop move at the approach speed to the
stop height; the current comes as a stream of time-stamped samples from a
*current monitor* (a DAQ's analog input, a potentiostat's measurement loop)
and goes through the same detector as the instrument-side approach
(:func:`napari_seccm.model.detect.contact_fired`). On a confirmed contact the
stage is halted at once; the contact height is where the commanded descent
was at the first fired sample's time.

The detection latency of this path is the monitor's block length plus the
host's turn-around plus the halt command's round trip: the stage overshoots by
speed x latency. :func:`software_approach` measures it on every approach
(``detection_latency_s`` in the result: from the first sample over the
threshold to the stage halted).

A current monitor (from a potentiostat controller's ``current_monitor(channel,
rate_hz)``) has ``sample_rate_hz``, ``read(timeout_s)`` returning the new
samples as rows ``[t_s, I_A]`` (``time.monotonic()`` base), and ``close()``.

While it runs, the samples recorded so far go into an :class:`ApproachProgress`
(the controller's ``approach_progress(probe)``, the Z stage's
``Approach_Progress``), so a live plot sees the descent as it happens.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol

import numpy as np

from ..model.detect import ContactWatch


class ApproachProgress:
    """The samples of the approach in progress recorded so far, rows
    [t_s, z_um, I_A] (t from the descent's start): written by the thread that
    records them, read by any other.

    :meth:`rows` returns a view of what is recorded, without copying: samples
    once recorded are never rewritten (a larger buffer is a new array), so a
    reader may slice it at leisure. :meth:`reset` at each approach's start
    and end (the final trace is the approach's result: a reader must not take
    the last approach's samples for the next one's).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = np.empty((3, 0))
        self._n = 0

    def reset(self) -> None:
        with self._lock:
            self._buf = np.empty((3, 0))
            self._n = 0

    def add(self, t_s: np.ndarray, z_um: np.ndarray, current_A: np.ndarray) -> None:
        t = np.asarray(t_s, dtype=float).ravel()
        m = t.size
        if m == 0:
            return
        with self._lock:
            n = self._n
            if n + m > self._buf.shape[1]:
                grown = np.empty((3, max(2 * self._buf.shape[1], n + m, 4096)))
                grown[:, :n] = self._buf[:, :n]
                self._buf = grown  # readers keep views of the old one
            self._buf[0, n : n + m] = t
            self._buf[1, n : n + m] = z_um
            self._buf[2, n : n + m] = current_A
            self._n = n + m

    def rows(self) -> np.ndarray:
        """Rows [t_s, z_um, I_A] of the samples so far (a read-only view)."""
        with self._lock:
            view = self._buf[:, : self._n]
        view.flags.writeable = False
        return view


class CurrentMonitor(Protocol):
    sample_rate_hz: float

    def read(self, timeout_s: float) -> np.ndarray: ...

    def close(self) -> None: ...


def software_approach(
    *,
    z0_um: float,
    stop_z_um: float,
    speed_um_s: float,
    threshold_A: float,
    mode: str,
    confirm_samples: int,
    monitor: CurrentMonitor,
    start_descent: Any,
    halt: Any,
    position_um: Any,
    abort: threading.Event,
    baseline_samples: int = 50,
    timeout_margin_s: float = 2.0,
    progress: ApproachProgress | None = None,
) -> dict[str, Any]:
    """Descend from ``z0_um`` to ``stop_z_um`` at ``speed_um_s`` (``start_descent()``
    sends that move), watching ``monitor``; ``halt()`` stops the stage,
    ``position_um()`` reads it. Returns the approach result (``contact``,
    ``contact_z_um``, ``final_z_um``, ``duration_s``, ``reason``, ``trace``
    rows [t_s, z_um, I_A] from the descent's start, and
    ``detection_latency_s``: from the first sample over the threshold to the
    stage halted; the overshoot is the speed times it). The samples go into
    ``progress`` (reset here) as they arrive: the trace so far."""
    watch = ContactWatch(threshold_A, mode, confirm_samples, baseline_samples)
    if progress is not None:
        progress.reset()
    ts: list[np.ndarray] = []
    cur: list[np.ndarray] = []
    # samples from before the move are the baseline's, not the approach's
    monitor.read(0.0)
    t_start = time.monotonic()
    start_descent()
    t_end = t_start + abs(z0_um - stop_z_um) / speed_um_s + timeout_margin_s
    block = max(1.0 / monitor.sample_rate_hz, 0.002)

    def z_at(t: np.ndarray) -> np.ndarray:
        return np.maximum(z0_um - speed_um_s * np.maximum(t - t_start, 0.0), stop_z_um)

    result: dict[str, Any] | None = None
    while True:
        if abort.is_set():
            halt()
            z = float(position_um())
            result = _result(False, math.nan, z, time.monotonic() - t_start, "aborted")
            break
        data = monitor.read(block)
        now = time.monotonic()
        if data.size:
            t, i = np.asarray(data[0], float), np.asarray(data[1], float)
            ts.append(t)
            cur.append(i)
            if progress is not None:
                progress.add(t - t_start, z_at(t), i)
            hit = watch.feed(i)
            if hit is not None:
                halt()
                t_halted = time.monotonic()
                t_first = float(np.concatenate(ts)[hit])
                z = float(position_um())
                # the stage moved on after the first fired sample: the contact
                # is not below where it stopped (sample times are estimates)
                z_contact = max(float(z_at(np.array([t_first]))[0]), z)
                result = _result(True, z_contact, z, t_halted - t_start, "contact")
                result["detection_latency_s"] = t_halted - t_first
                break
        z_now = float(position_um()) if now >= t_end - timeout_margin_s else None
        if z_now is not None and z_now <= stop_z_um + 1e-6:
            result = _result(False, math.nan, z_now, now - t_start, "no contact")
            break
        if now > t_end:
            halt()
            z = float(position_um())
            result = _result(
                False,
                math.nan,
                z,
                now - t_start,
                f"error: the stage did not reach the stop height {stop_z_um:g} um in time "
                f"(at {z:g} um)",
            )
            break
    if ts:
        t = np.concatenate(ts)
        result["trace"] = np.vstack((t - t_start, z_at(t), np.concatenate(cur)))
    return result


def _result(contact: bool, contact_z: float, final_z: float, dt: float, reason: str) -> dict:
    return {
        "contact": bool(contact),
        "contact_z_um": float(contact_z),
        "final_z_um": float(final_z),
        "duration_s": float(dt),
        "reason": reason,
        "trace": np.empty((3, 0)),
        "detection_latency_s": math.nan,
    }
