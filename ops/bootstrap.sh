#!/usr/bin/env bash
# Installs what PrinterMaster needs on a Debian/Ubuntu machine: system packages when missing
# (Mosquitto and its clients, CUPS for the CUPS backend and its tests, a compiler and headers for
# pycups, promtool from the prometheus package for the alert-rule tests), then a virtualenv with
# the project and its dev extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
[ -x /usr/sbin/cupsd ] || need+=(cups)
[ -f /usr/include/cups/cups.h ] || need+=(libcups2-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
# the console's browser tests drive Debian's Chromium through Playwright (no browser download)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
"$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)

if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # another apt (unattended-upgrades at boot) may hold the lock: wait for it, bounded, and let
  # apt-get wait too for the moment between our check and its own start
  LOCK_WAIT=${LOCK_WAIT:-120}
  $SUDO env LOCK_WAIT="$LOCK_WAIT" PYTHON="$(command -v "$PYTHON")" ./ops/wait-dpkg-lock.sh
  $SUDO apt-get -o DPkg::Lock::Timeout="$LOCK_WAIT" update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout="$LOCK_WAIT" \
    install -y -qq --no-install-recommends "${need[@]}"
fi

# Mosquitto's and CUPS's packaged services are not ours: the project starts its own instances
# with its own configuration on free ports. Of the prometheus package only promtool is used
# (`promtool check rules` / `test rules` on ops/prometheus/): its server, which the package
# starts where systemd runs, is stopped and disabled.
if [[ " ${need[*]-} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[dev,cups]'
touch "$VENV/.installed"
echo "bootstrap: ready ($("$VENV/bin/python" --version), $(mosquitto -h 2>/dev/null | head -1 || /usr/sbin/mosquitto -h | head -1))"
