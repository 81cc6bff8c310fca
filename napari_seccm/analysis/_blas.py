"""One BLAS thread while the map analysis runs.

The stripe and domain fits solve thousands of small least-squares problems
(a few thousand pixels by ~20 columns). OpenBLAS hands each to its thread
pool; on a busy two-core machine (measured: the test suite running beside)
that made a 40 x 40 map take 1-5 s instead of 0.1-0.3 s on one thread. The
decorator sets the thread count of every OpenBLAS that numpy and scipy loaded
to 1 for the duration of the call and restores it after (nested calls count;
other threads of the process see one BLAS thread meanwhile). Where the
library cannot be found (another platform, another BLAS), it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

F = TypeVar("F", bound="Callable[..., Any]")

_SETTERS = (
    "openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
)
_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Any, Any, int]] = []
_cache: dict[str, tuple[Any, Any] | None] = {}


def _find() -> list[tuple[Any, Any]]:
    """(setter, getter) of each OpenBLAS loaded in this process (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        return []
    for path in paths:
        if path in _cache:
            continue
        _cache[path] = None
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            getter = getattr(lib, name.replace("set_", "get_"), None)
            if setter is not None and getter is not None:
                getter.restype = ctypes.c_int
                _cache[path] = (setter, getter)
                break
    return [_cache[p] for p in paths if _cache.get(p) is not None]


def single_blas_thread(func: F) -> F:
    """Run ``func`` with one BLAS thread (see the module docstring)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _depth
        with _lock:
            if _depth == 0:
                _saved.clear()
                for setter, getter in _find():
                    try:
                        n = int(getter())
                        setter(1)
                        _saved.append((setter, getter, n))
                    except Exception:  # a foreign library: leave it alone
                        continue
            _depth += 1
        try:
            return func(*args, **kwargs)
        finally:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    for setter, _getter, n in _saved:
                        try:
                            setter(n)
                        except Exception:
                            continue
                    _saved.clear()

    return wrapper  # type: ignore[return-value]
