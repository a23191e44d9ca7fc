#!/usr/bin/env bash
# Installs the system libraries the package links (oneDNN, libpng, libjpeg) on Debian/Ubuntu, and PostgreSQL,
# which the shared-queue tests start on their own (initdb into a temporary folder; docs/SCALING.md).
# Needs root (or sudo). Swift 6.x itself must already be installed.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends libdnnl-dev libpng-dev libjpeg-dev pkg-config postgresql >/dev/null
echo "system libraries installed: $(dpkg-query -W -f='${Package} ${Version}, ' libdnnl-dev libpng-dev libjpeg-dev postgresql)"
