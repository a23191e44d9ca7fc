#!/usr/bin/env bash
# Browser test of the page `sd serve` serves: Debian's Chromium + chromium-driver driven by Selenium
# (Scripts/web/test_page.py) against the bundled tiny models. Installs what is missing (root or sudo for apt).
# Screenshots go to $SD_WEB_ARTIFACTS (default /tmp/sd-web-artifacts), outside the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
VENV="${SD_WEB_VENV:-${TMPDIR:-/tmp}/sd-web-venv}"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q -r Scripts/web/requirements.txt
CONFIG="${SD_BUILD_CONFIG:-release}"
swift build -c "$CONFIG" --product sd >/dev/null
SD_BIN="$(swift build -c "$CONFIG" --show-bin-path)/sd" timeout 900 "$VENV/bin/python" Scripts/web/test_page.py
