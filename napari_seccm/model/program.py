"""The measurement program: the potential applied during one landing.

A :class:`Program` is a sequence of segments, each a :class:`Hold` (one
potential for a time) or a :class:`Ramp` (linear from one potential to another
over a time). The plan builds it (CA, LSV, CV, staircase or custom segments),
the potentiostat runs it (its ``Waveform`` property holds :meth:`Program.to_json`),
the simulator samples it, and the analysis knows from it which sample belongs
to which segment. There is one way to sample a program, :meth:`Program.sample`;
everything that needs the sample count or the potential of a sample goes
through it, so that the trace length, the store's arrays and the analysis agree.

JSON form (the ``Waveform`` device property, unchanged since the first stores)::

    [{"hold": 1.0, "t": 0.1}, {"ramp": [0.0, 1.0], "t": 0.5}]

``hold``: constant potential (V) for ``t`` s; ``ramp``: linear from the first
to the second potential (V) over ``t`` s.

Pure Python; numpy only inside the functions that return arrays. Nothing of
Micro-Manager, Qt or zarr.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Hold", "Program", "Ramp", "Segment"]


def _number(owner: str, name: str, value: Any, unit: str) -> float:
    """``value`` as a finite float; a ValueError naming ``owner.name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be a number ({unit}), got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{owner}: {name} must be finite ({unit}), got {value!r}")
    return v


def _duration(owner: str, value: Any) -> float:
    v = _number(owner, "duration_s", value, "s")
    if not v > 0:
        raise ValueError(f"{owner}: duration_s must be > 0 s, got {value!r}")
    return v


@dataclass(frozen=True)
class Hold:
    """Hold ``potential_V`` for ``duration_s``."""

    potential_V: float
    duration_s: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "potential_V", _number("Hold", "potential_V", self.potential_V, "V")
        )
        object.__setattr__(self, "duration_s", _duration("Hold", self.duration_s))

    @property
    def start_V(self) -> float:
        return self.potential_V

    @property
    def end_V(self) -> float:
        return self.potential_V

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, ``{"hold": V, "t": s}``."""
        return {"hold": self.potential_V, "t": self.duration_s}


@dataclass(frozen=True)
class Ramp:
    """Linear from ``start_V`` to ``end_V`` over ``duration_s``."""

    start_V: float
    end_V: float
    duration_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_V", _number("Ramp", "start_V", self.start_V, "V"))
        object.__setattr__(self, "end_V", _number("Ramp", "end_V", self.end_V, "V"))
        object.__setattr__(self, "duration_s", _duration("Ramp", self.duration_s))

    @property
    def rate_V_per_s(self) -> float:
        """Sweep rate, V/s (negative for a falling ramp)."""
        return (self.end_V - self.start_V) / self.duration_s

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, ``{"ramp": [V0, V1], "t": s}``."""
        return {"ramp": [self.start_V, self.end_V], "t": self.duration_s}


Segment: TypeAlias = Hold | Ramp


def _segment_from_dict(i: int, seg: Any) -> Segment:
    """One segment of the JSON form; a ValueError naming the segment and the problem."""
    if isinstance(seg, (Hold, Ramp)):
        return seg
    if not isinstance(seg, dict):
        raise ValueError(
            f'segment {i}: expected {{"hold": V, "t": s}} or {{"ramp": [V0, V1], "t": s}}, '
            f"got {seg!r}"
        )
    unknown = sorted(set(seg) - {"hold", "ramp", "t"})
    if unknown:
        raise ValueError(
            f"segment {i}: unknown key(s) {', '.join(map(repr, unknown))}; "
            "a segment has 'hold' or 'ramp', and 't'"
        )
    t = seg.get("t")
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (0 < t < math.inf):
        raise ValueError(f"segment {i}: duration 't' must be a finite number > 0 s, got {t!r}")
    if ("hold" in seg) == ("ramp" in seg):
        raise ValueError(f"segment {i}: give exactly one of 'hold' or 'ramp'")
    try:
        if "hold" in seg:
            return Hold(seg["hold"], t)
        ramp = seg["ramp"]
        if not isinstance(ramp, (list, tuple)) or len(ramp) != 2:
            raise ValueError(f"'ramp' takes [start_V, end_V], got {ramp!r}")
        return Ramp(ramp[0], ramp[1], t)
    except ValueError as e:
        raise ValueError(f"segment {i}: {e}") from None


@dataclass(frozen=True)
class Program:
    """A potential program: hold and ramp segments, run one after the other.

    ``segments``: :class:`Hold` / :class:`Ramp` objects (their JSON dicts are
    accepted too). Immutable and hashable; equal programs sample equally.
    """

    segments: tuple[Segment, ...]

    def __init__(self, segments: Iterable[Segment | dict[str, Any]]) -> None:
        if isinstance(segments, (str, bytes, dict)) or not isinstance(segments, Iterable):
            raise ValueError(
                f"a program takes a list of segments (Hold, Ramp), got {type(segments).__name__}"
            )
        segs = tuple(_segment_from_dict(i, s) for i, s in enumerate(segments))
        if not segs:
            raise ValueError("a program needs at least one segment")
        object.__setattr__(self, "segments", segs)

    # ---------------------------------------------------------- constructors
    @classmethod
    def chronoamperometry(cls, potential_V: float, duration_s: float) -> Program:
        """CA: hold one potential."""
        return cls([Hold(potential_V, duration_s)])

    @classmethod
    def linear_sweep(cls, start_V: float, end_V: float, scan_rate_V_per_s: float) -> Program:
        """LSV: one ramp from ``start_V`` to ``end_V`` at ``scan_rate_V_per_s``."""
        t = _sweep_time(start_V, end_V, "end_V", scan_rate_V_per_s)
        return cls([Ramp(start_V, end_V, t)])

    @classmethod
    def cyclic_voltammetry(
        cls, start_V: float, vertex_V: float, scan_rate_V_per_s: float, cycles: int = 1
    ) -> Program:
        """CV: ``start -> vertex -> start``, ``cycles`` times."""
        if isinstance(cycles, bool) or not isinstance(cycles, numbers.Integral) or cycles < 1:
            raise ValueError(f"cyclic voltammetry: cycles must be an integer >= 1, got {cycles!r}")
        t = _sweep_time(start_V, vertex_V, "vertex_V", scan_rate_V_per_s)
        one = [Ramp(start_V, vertex_V, t), Ramp(vertex_V, start_V, t)]
        return cls(one * int(cycles))

    @classmethod
    def staircase(cls, start_V: float, end_V: float, steps: int, hold_s: float) -> Program:
        """``steps`` equal steps from ``start_V`` to ``end_V`` (both included),
        each held ``hold_s``."""
        import numpy as np

        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
            raise ValueError(f"staircase: steps must be an integer >= 2, got {steps!r}")
        _number("staircase", "start_V", start_V, "V")
        _number("staircase", "end_V", end_V, "V")
        levels = np.linspace(float(start_V), float(end_V), int(steps))
        return cls([Hold(float(v), hold_s) for v in levels])

    @classmethod
    def custom(cls, segments: Iterable[Segment | dict[str, Any]]) -> Program:
        """Any sequence of segments (objects or their JSON dicts)."""
        return cls(segments)

    def with_pre_hold(self, hold_s: float) -> Program:
        """This program after a hold at its first potential (settling after
        landing); itself when ``hold_s`` is 0."""
        if hold_s == 0:
            return self
        return Program([Hold(self.segments[0].start_V, hold_s), *self.segments])

    def __add__(self, other: Program) -> Program:
        if not isinstance(other, Program):
            return NotImplemented
        return Program([*self.segments, *other.segments])

    # ----------------------------------------------------------------- JSON
    def to_segments(self) -> list[dict[str, Any]]:
        """The JSON form as Python objects."""
        return [s.to_dict() for s in self.segments]

    def to_json(self) -> str:
        """``[{"hold": V, "t": s}, {"ramp": [V0, V1], "t": s}, ...]``."""
        return json.dumps(self.to_segments())

    @classmethod
    def from_segments(cls, segments: Sequence[dict[str, Any]]) -> Program:
        return cls(segments)

    @classmethod
    def from_json(cls, text: str | bytes) -> Program:
        """Parse the JSON form; a ValueError says what is wrong and where."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"the program is not valid JSON: {e}") from e
        if not isinstance(data, list):
            raise ValueError(
                f"the program's JSON must be a list of segments, got {type(data).__name__}"
            )
        return cls(data)

    # ------------------------------------------------------------- summary
    @property
    def duration_s(self) -> float:
        return float(sum(s.duration_s for s in self.segments))

    def potential_limits(self) -> tuple[float, float]:
        """(lowest, highest) programmed potential, V."""
        vals = [v for s in self.segments for v in (s.start_V, s.end_V)]
        return min(vals), max(vals)

    # ------------------------------------------------------------ sampling
    def sample_counts(self, sample_rate_hz: float) -> list[int]:
        """Samples of each segment at ``sample_rate_hz``.

        Each segment gets ``round(t fs + carry)`` samples, where the carry is
        what the earlier segments' rounding left over: the count up to the end
        of any segment stays within half a sample of its time x fs, so the
        total is ``round(duration fs)`` within one sample. A segment shorter
        than half a sample may get none.
        """
        fs = _number("sampling", "sample_rate_hz", sample_rate_hz, "Hz")
        if not fs > 0:
            raise ValueError(f"sampling: sample_rate_hz must be > 0 Hz, got {sample_rate_hz!r}")
        counts = []
        carry = 0.0
        for seg in self.segments:
            n_exact = seg.duration_s * fs + carry
            n = int(round(n_exact))
            carry = n_exact - n
            counts.append(max(n, 0))
        return counts

    def n_samples(self, sample_rate_hz: float) -> int:
        """Samples of the whole program (the trace length)."""
        return sum(self.sample_counts(sample_rate_hz))

    def sample(self, sample_rate_hz: float) -> np.ndarray:
        """Potential at each sample, V (sample k covers ``[k/fs, (k+1)/fs)``;
        a ramp is sampled at the middle of each sample)."""
        import numpy as np

        parts = []
        for seg, n in zip(self.segments, self.sample_counts(sample_rate_hz), strict=True):
            if n <= 0:
                continue
            if isinstance(seg, Hold):
                parts.append(np.full(n, seg.potential_V))
            else:
                e0, e1 = seg.start_V, seg.end_V
                parts.append(e0 + (e1 - e0) * (np.arange(n) + 0.5) / n)
        return np.concatenate(parts) if parts else np.empty(0)

    def segment_index(self, sample_rate_hz: float) -> np.ndarray:
        """Segment number (into :attr:`segments`) of each sample, int64; a
        segment with no sample does not appear."""
        import numpy as np

        counts = self.sample_counts(sample_rate_hz)
        return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _sweep_time(start_V: float, end_V: float, end_name: str, rate: float) -> float:
    """Duration of a sweep, s; a ValueError naming the bad value."""
    e0 = _number("sweep", "start_V", start_V, "V")
    e1 = _number("sweep", end_name, end_V, "V")
    r = _number("sweep", "scan_rate_V_per_s", rate, "V/s")
    if not r > 0:
        raise ValueError(f"sweep: scan_rate_V_per_s must be > 0 V/s, got {rate!r}")
    if e0 == e1:
        raise ValueError(
            f"sweep: start_V and {end_name} are both {e0:g} V: a sweep needs two different "
            "potentials (to hold one potential, use chronoamperometry)"
        )
    return abs(e1 - e0) / r
