#!/usr/bin/env bash
# The unit tests under AddressSanitizer (their fuzz-corpus replay included), in their own build folder. Run by
# hand before a change to the kernels, parsers or anything with unsafe pointers lands: the sanitized build of the
# package and its dependencies takes 11-12 minutes on 2 cores, more than CI's 30 minutes leave. Leak checking is
# off: the `sd` processes the CLI tests start would fail at exit on what Foundation's libcurl keeps (not this code).
set -euo pipefail
cd "$(dirname "$0")/.."
ASAN_OPTIONS=detect_leaks=0 swift test -c release --build-path .build-asan -Xswiftc -sanitize=address "$@"
