#!/usr/bin/env bash
# Builds the release binary and runs the Swift vs PyTorch SD 1.5 comparison (Scripts/bench/compare.py).
# Usage: bash Scripts/bench/compare.sh [--runs N] [--only CASE ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product sd >/dev/null
exec python3 Scripts/bench/compare.py "$@"
