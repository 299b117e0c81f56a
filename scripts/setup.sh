#!/usr/bin/env bash
# Set up a development/demo checkout on Debian 12 / Raspberry Pi OS Bookworm:
# Debian packages (mosquitto, systemd headers for systemd-python), a venv at .venv and the
# project installed into it. Idempotent: a second run only checks.
#   ./scripts/setup.sh          what the agent and the demo need
#   ./scripts/setup.sh --test   plus what the whole test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "setup: not root and no sudo: install Debian packages by hand" >&2; fi
fi

pkgs=(mosquitto mosquitto-clients libsystemd-dev pkg-config gcc python3-venv python3-dev)
if [ $want_test = 1 ]; then
    # systemd-analyze (unit verify), packaging tools (the .deb test), a browser (HTML report test),
    # PostgreSQL server binaries (the ingester's tests start a private server; the package's
    # own cluster is not used).
    pkgs+=(systemd dpkg-dev fakeroot lintian debhelper chromium shellcheck postgresql)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=""
for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        PY="$cand"; break
    fi
done
[ -n "$PY" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.tec-agent-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing tec-agent and its Python dependencies into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    # setuptools' editable-install notice (a block: "Editable installation. ... Please be
    # careful with folders in your working directory with the same name as your package",
    # shown by pip 26 even with -q) is a warning whose message starts "Editable
    # installation.": only that one is filtered; errors and every other warning still show.
    PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation." \
        .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi
echo "setup: ready (.venv/bin/tec-agent)" >&2
