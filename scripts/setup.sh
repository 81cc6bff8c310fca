#!/usr/bin/env bash
# One-shot, idempotent set-up of a development / CI machine (Debian):
#   1. the Debian packages Qt (PyQt6) and napari need to run under Xvfb,
#   2. .venv with this package installed editable, extras [napari,test].
# A second run with nothing changed only checks (well under a second).
#
# Environment knobs:
#   PYTHON=python3          interpreter used to create the venv
#   VENV=.venv              where the venv lives (relative to the repo root)
#   SETUP_EXTRAS=napari,test
#   SETUP_SKIP_APT=1        do not check/install Debian packages
#   SETUP_FORCE=1           reinstall the Python packages even if the stamp is current
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${SETUP_EXTRAS:-napari,test}
STAMP="$VENV/.setup-stamp"

export DEBIAN_FRONTEND=noninteractive
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Debian packages. The xcb/xkb/GL/fontconfig/dbus/glib libraries are what
# `ldd PyQt6/Qt6/plugins/platforms/libqxcb.so` (and the xcb GL integrations)
# resolve to; libgl1-mesa-dri gives the llvmpipe software OpenGL that vispy uses
# under Xvfb; libxcb-xinerama0 is only needed by PyQt5 but is tiny.
APT_PACKAGES=(
    xvfb xauth
    libxcb1 libx11-xcb1 libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0
    libxcb-cursor0 libxcb-image0 libxcb-render-util0 libxcb-randr0
    libxcb-shape0 libxcb-xkb1 libxkbcommon0 libxkbcommon-x11-0
    libgl1 libegl1 libgl1-mesa-dri
    libfontconfig1 fonts-dejavu-core libdbus-1-3 libglib2.0-0
)

# A package counts as present if it, or its 64-bit-time_t rename (Debian 13:
# libglib2.0-0 -> libglib2.0-0t64), is installed.
missing_debian_packages() {
    local installed
    installed=$(
        dpkg-query -W -f='${Package} ${db:Status-Status}\n' \
            "${APT_PACKAGES[@]}" "${APT_PACKAGES[@]/%/t64}" 2>/dev/null |
            awk '$2 == "installed" {sub(/:.*/, "", $1); print $1}'
    ) || true
    local p
    for p in "${APT_PACKAGES[@]}"; do
        grep -qxF -e "$p" -e "${p}t64" <<<"$installed" || printf '%s\n' "$p"
    done
    # `python3 -m venv` needs ensurepip, which Debian's python3 ships apart.
    if [[ ! -x "$VENV/bin/python" ]] && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        printf '%s\n' python3-venv
    fi
}

apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: as root run apt-get install $*"
        sudo=(sudo)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q
        -o DPkg::Lock::Timeout=300
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    local log
    log=$(mktemp)
    if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "$@"; } \
        </dev/null >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get failed"
    fi
    rm -f "$log"
}

if [[ -z ${SETUP_SKIP_APT:-} ]] && command -v dpkg-query >/dev/null; then
    mapfile -t missing < <(missing_debian_packages)
    if ((${#missing[@]})); then
        say "installing Debian packages: ${missing[*]}"
        apt_install "${missing[@]}"
        mapfile -t still < <(missing_debian_packages)
        ((${#still[@]} == 0)) || die "Debian packages still missing: ${still[*]}"
    else
        say "Debian packages: ok"
    fi
elif [[ -z ${SETUP_SKIP_APT:-} ]]; then
    say "not a Debian system: install Xvfb and the Qt xcb libraries yourself"
fi

# --- Python virtualenv -------------------------------------------------------
if [[ -e "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "$VENV is broken (its interpreter does not start): recreating it"
    rm -rf "$VENV"
fi
if [[ ! -d "$VENV" ]]; then
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is $("$PYTHON" -V 2>&1); this project needs Python >= 3.11"
    say "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

want=$(
    {
        cat pyproject.toml
        echo "extras=$EXTRAS"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)
have=$(cat "$STAMP" 2>/dev/null || true)
if [[ "$want" == "$have" && -z ${SETUP_FORCE:-} ]]; then
    say "Python packages: ok ($VENV is current)"
else
    say "installing Python packages into $VENV: -e .[$EXTRAS] (about a minute)"
    rm -f "$STAMP"
    t0=$SECONDS
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q --progress-bar off -e ".[$EXTRAS]"
    echo "$want" >"$STAMP"
    say "Python packages installed in $((SECONDS - t0)) s"
fi

# --- check that Qt can load its X11 platform plugin --------------------------
shopt -s nullglob
qxcb=("$VENV"/lib/python3*/site-packages/PyQt*/Qt*/plugins/platforms/libqxcb.so)
shopt -u nullglob
if ((${#qxcb[@]})); then
    notfound=$(ldd "${qxcb[@]}" 2>&1 | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
    [[ -z "$notfound" ]] ||
        die "Qt's xcb platform plugin cannot load: missing $notfound(apt-cache search the .so names and add the packages to APT_PACKAGES in $0)"
fi
if [[ -z ${SETUP_SKIP_APT:-} ]] && ! command -v Xvfb >/dev/null; then
    die "Xvfb not found: GUI tests cannot run"
fi
say "ready"
