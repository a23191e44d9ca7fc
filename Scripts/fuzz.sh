#!/usr/bin/env bash
# Builds the libFuzzer driver (Fuzz/: AddressSanitizer + coverage, release) and fuzzes TARGET for SECONDS
# (every target in turn when TARGET is omitted or "all"). New inputs go to a work corpus outside the
# repository ($FUZZ_WORK/<target>, default /tmp/sd-fuzz); the checked-in seeds (Fuzz/corpus/<target>) are
# read, never written. Crashing inputs land in $FUZZ_WORK/artifacts/. Exits 1 when any target crashed,
# 72 when one was interrupted (SIGINT) and none crashed.
#   Scripts/fuzz.sh                 # all targets, 60 s each
#   Scripts/fuzz.sh torch 600       # one target
#   FUZZ_BUILD_ONLY=1 Scripts/fuzz.sh   # build only; FUZZ_NO_BUILD=1 skips the build
#   Extra libFuzzer flags: FUZZ_FLAGS="-jobs=2 -workers=2"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGETS=(safetensors torch config tokenizer image depthmap adapters singlefile server)
target=${1:-all}
seconds=${2:-60}
work=${FUZZ_WORK:-/tmp/sd-fuzz}
build=${FUZZ_BUILD_PATH:-$ROOT/Fuzz/.build}

if [ "$target" != all ] && [[ ! " ${TARGETS[*]} " == *" $target "* ]]; then
    echo "fuzz.sh: unknown target '$target' (targets: ${TARGETS[*]})" >&2
    exit 2
fi

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
    swift build -c release --package-path Fuzz --build-path "$build" -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld
fi
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0
binary="$build/release/sd-fuzz"

# The dictionary of a target: the token lists (Fuzz/dict/*.dict) its format is made of.
dict_parts() {
    case "$1" in
        safetensors) echo safetensors ;;
        torch) echo pickle zip ;;
        config) echo json config ;;
        tokenizer) echo json tokenizer ;;
        image) echo png jpeg ;;
        depthmap) echo npy png safetensors pickle ;;
        adapters) echo safetensors lora pickle zip ;;
        singlefile) echo safetensors singlefile pickle zip ;;
        server) echo json server multipart ;;
    esac
}

failed=()
interrupted=()
run_target() {
    local t=$1
    mkdir -p "$work/$t" "$work/artifacts"
    local dict="$work/$t.dict"
    : > "$dict"
    for part in $(dict_parts "$t"); do cat "Fuzz/dict/$part.dict" >> "$dict"; done
    echo "== $t: ${seconds}s (work corpus $work/$t)"
    local rc=0
    # Leaks are not checked: inputs are processed in one process and a cache kept between inputs is no bug.
    # Swift's own crash backtracer is off so that a trap reaches libFuzzer (which saves the input) at once.
    SD_FUZZ_TARGET=$t SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=0 \
        "$binary" "$work/$t" "Fuzz/corpus/$t" -dict="$dict" -max_total_time="$seconds" \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$t-" ${FUZZ_FLAGS:-} || rc=$?
    # 72 is libFuzzer's exit status when interrupted (SIGINT): no input failed, so it is no crash.
    if [ $rc -eq 72 ]; then interrupted+=("$t"); elif [ $rc -ne 0 ]; then failed+=("$t"); fi
}

if [ "$target" = all ]; then
    for t in "${TARGETS[@]}"; do run_target "$t"; done
else
    run_target "$target"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in $work/artifacts/)" >&2
    exit 1
fi
if [ ${#interrupted[@]} -gt 0 ]; then
    echo "fuzz.sh: interrupted: ${interrupted[*]}" >&2
    exit 72
fi
