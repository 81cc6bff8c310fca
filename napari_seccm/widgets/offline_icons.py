"""Icons for pymmcore-widgets on an offline instrument PC.

pymmcore-widgets (its ``StageWidget`` among others) asks pyconify for its icons,
which downloads them the first time and keeps them in a disk cache; with no
network the widget cannot even be built. :func:`provide_offline_icons` puts
simple drawings of the icons it needs into that cache, under the names
pyconify looks for when it cannot reach its server. An icon already in the
cache (downloaded once online) is left as it is.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

_CHEVRON = "M7.4 8.6 12 13.2l4.6-4.6L18 10l-6 6-6-6z"  # a down chevron, 24 x 24

#: rotation (deg) of the down chevron for each direction
_DIRECTIONS = {"down": 0, "left": 90, "up": 180, "right": 270}
_COUNTS = {"": 1, "double-": 2, "triple-": 3}

_STOP = (
    "M8.1 1h7.8L23 8.1v7.8L15.9 23H8.1L1 15.9V8.1z"
    "M6.5 10.5v3h11v-3z"  # an octagon with a bar (a stop sign)
)

#: (icon, colours) that pymmcore-widgets' StageWidget asks for
STAGE_WIDGET_ICONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    *(
        (f"mdi:chevron-{count}{direction}", ("rgb(0, 180, 0)", "lime", "green"))
        for count in _COUNTS
        for direction in _DIRECTIONS
    ),
    ("bi:sign-stop-fill", ("red",)),
)


#: a generic glyph (a rounded square with a dot) for the icons pymmcore-widgets'
#: property browser and configuration-group tables show beside each row
_GENERIC = "M5 3h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm0 2v14h14V5zm7 4a3 3 0 1 1 0 6 3 3 0 0 1 0-6z"


def standard_icons() -> tuple[tuple[str, tuple[str | None, ...]], ...]:
    """pymmcore-widgets' standard icons (device and property types, table
    tools), in the colours it asks for; none if its layout changed."""
    try:
        from pymmcore_widgets._icons import StandardIcon
    except ImportError:  # pragma: no cover - pymmcore-widgets changed its layout
        return ()
    return tuple((str(icon.value), ("gray", None)) for icon in StandardIcon)


def _svg(name: str, color: str | None) -> bytes:
    if not name.startswith("mdi:chevron-") and name != "bi:sign-stop-fill":
        fill = color or "currentColor"
        body = f'<path fill="{fill}" fill-rule="evenodd" d="{_GENERIC}"/>'
    elif name == "bi:sign-stop-fill":
        body = f'<path fill="{color}" fill-rule="evenodd" d="{_STOP}"/>'
    else:
        stem = name.split(":", 1)[1].removeprefix("chevron-")
        count = next(n for p, n in sorted(_COUNTS.items(), reverse=True) if stem.startswith(p))
        direction = stem.split("-")[-1]
        rot = _DIRECTIONS[direction]
        offsets = {1: (0,), 2: (-3, 3), 3: (-5, 0, 5)}[count]
        body = "".join(
            f'<path fill="{color}" transform="rotate({rot} 12 12) translate(0 {dy})" d="{_CHEVRON}"/>'
            for dy in offsets
        )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="1em" height="1em" viewBox="0 0 24 24">'
        f"{body}</svg>"
    ).encode()


def provide_offline_icons(
    icons: tuple[tuple[str, tuple[str | None, ...]], ...] | None = None,
) -> int:
    """Put the icons that are missing into pyconify's cache; how many were
    added. By default the stage widget's and pymmcore-widgets' standard ones."""
    if icons is None:
        icons = STAGE_WIDGET_ICONS + standard_icons()
    try:
        from pyconify._cache import cache_key, svg_cache
        from pyconify.api import NO_LAST_MOD
    except ImportError:  # pragma: no cover - pyconify changed its layout
        log.warning("pyconify's cache layout is unknown: offline icons not provided")
        return 0
    cache = svg_cache()
    added = 0
    for name, colors in icons:
        prefix, icon = name.split(":", 1)
        for color in colors:
            key = cache_key((prefix, icon), {"color": color}, NO_LAST_MOD)
            stem = key.removesuffix(NO_LAST_MOD)
            with contextlib.suppress(Exception):
                if any(k.startswith(stem) for k in cache):
                    continue
                cache[key] = _svg(name, color)
                added += 1
    return added


ICON_SERVER = "api.iconify.design"


def _fail_fast_adapter() -> Any:
    """A requests transport for the icon server that gives up for good after
    one failed connection (0.5 s to connect): later icons fail at once and
    show superqt's placeholder, instead of each waiting pyconify's 2 s."""
    import requests
    from requests.adapters import HTTPAdapter

    class FailFast(HTTPAdapter):
        offline = False

        def send(self, request: Any, **kwargs: Any) -> Any:
            if FailFast.offline:
                raise requests.ConnectionError(
                    f"{ICON_SERVER} was not reachable: icons not in the local cache show "
                    "as their placeholder"
                )
            kwargs["timeout"] = (0.5, kwargs.get("timeout") or 2)
            try:
                return super().send(request, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                FailFast.offline = True
                log.info("%s is not reachable: icons from the local cache only", ICON_SERVER)
                raise

    return FailFast()


def fail_fast_when_offline() -> bool:
    """On a computer that cannot reach the icon server, let only the first
    icon download wait (0.5 s), and every later one fail at once instead of
    after pyconify's 2 s timeout each (pymmcore-widgets' property browser asks
    for one per row: tens of seconds of a frozen window on an instrument PC
    without internet). Nothing is downloaded or probed here: the first icon a
    widget asks for finds out. Icons already in the cache, and
    :func:`provide_offline_icons`' drawings, still show. Returns whether the
    transport was installed."""
    try:
        from pyconify import api

        api._session().mount(f"https://{ICON_SERVER}", _fail_fast_adapter())
    except Exception as e:  # pragma: no cover - pyconify changed
        log.warning("could not shorten icon downloads: %s", e)
        return False
    return True
