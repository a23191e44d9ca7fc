#!/usr/bin/env bash
# A long fuzzing campaign on a shared machine, at nice 10: SLICE-second runs until every target has GOAL CPU
# seconds, then it stops by itself. Start one runner per core you can spare; they share one queue: each
# slice goes to the target with the most CPU still to do that no other runner is fuzzing (a lock directory
# per target), and a target's last slice is cut to what it still needs. Corpora persist outside the
# repository in $CAMPAIGN_DIR/<target>/ (crashes in $CAMPAIGN_DIR/artifacts/); every run appends one line
# to $CAMPAIGN_DIR/log.tsv: time, target, slice, cpu_s (user+sys), execs, cov, ft, corpus, exit status.
#   for r in a b; do CAMPAIGN_RUNNER=$r setsid nohup Scripts/fuzz_campaign.sh > /work/fuzz-campaign/runner-$r.out 2>&1 & done
#   awk -F'\t' 'NR>1 {cpu[$2]+=$4; ex[$2]+=$5} END {for (t in cpu) print t, cpu[t], ex[t]}' /work/fuzz-campaign/log.tsv
# A runner stopped mid-slice (kill -INT its sd-fuzz) logs the slice with status 72 and takes the next one;
# stale locks of a killed runner are removed with: rm -r $CAMPAIGN_DIR/lock-*
set -uo pipefail
cd "$(dirname "$0")/.."
CAMPAIGN_DIR=${CAMPAIGN_DIR:-/work/fuzz-campaign}
GOAL=${GOAL:-1800}
SLICE=${SLICE:-600}
read -r -a TARGETS <<< "${CAMPAIGN_TARGETS:-safetensors torch config tokenizer image depthmap adapters singlefile server}"
pidfile="$CAMPAIGN_DIR/runner${CAMPAIGN_RUNNER:+-$CAMPAIGN_RUNNER}.pid"
log="$CAMPAIGN_DIR/log.tsv"
mkdir -p "$CAMPAIGN_DIR/runs"
[ -f "$log" ] || printf 'time\ttarget\tslice_s\tcpu_s\texecs\tcov\tft\tcorpus\tstatus\n' > "$log"
echo $$ > "$pidfile"
held=""
trap '[ -n "$held" ] && rmdir "$CAMPAIGN_DIR/lock-$held" 2>/dev/null; rm -f "$pidfile"' EXIT

[ "${FUZZ_NO_BUILD:-0}" = 1 ] || FUZZ_BUILD_ONLY=1 nice -n 10 Scripts/fuzz.sh || { echo "fuzz_campaign: build failed" >&2; exit 1; }

cpu_so_far() { awk -F'\t' -v t="$1" 'NR>1 && $2==t {s+=$4} END {printf "%d", s}' "$log"; }

# Prints "target seconds-to-go" for every unfinished target, most to go first.
todo() {
    for t in "${TARGETS[@]}"; do
        left=$((GOAL - $(cpu_so_far "$t")))
        [ "$left" -gt 0 ] && echo "$t $left"
    done | sort -k2,2nr
}

run_slice() {
    local t=$1 seconds=$2
    local out="$CAMPAIGN_DIR/runs/$t-$(date +%Y%m%d-%H%M%S)-${CAMPAIGN_RUNNER:-0}.log"
    FUZZ_WORK="$CAMPAIGN_DIR" FUZZ_NO_BUILD=1 /usr/bin/time -f '%U+%S' -o "$out.time" \
        nice -n 10 Scripts/fuzz.sh "$t" "$seconds" > "$out" 2>&1
    local status=$?
    local cpu execs last cov ft corp
    cpu=$(tail -1 "$out.time" | awk '{split($0, a, "+"); printf "%d", a[1] + a[2]}')  # (GNU time may first note the exit status)
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$out" | tail -1 | awk '{print $2}')
    last=$(grep -E '^#[0-9]+.*cov: ' "$out" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<< "$last")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -Is)" "$t" "$seconds" "${cpu:-0}" "${execs:-0}" "${cov:-}" "${ft:-}" "${corp:-}" "$status" >> "$log"
}

while true; do
    queue=$(todo)
    [ -z "$queue" ] && break
    picked=""
    while read -r t left; do
        if mkdir "$CAMPAIGN_DIR/lock-$t" 2>/dev/null; then picked="$t $left"; break; fi
    done <<< "$queue"
    if [ -z "$picked" ]; then sleep 10; continue; fi  # every unfinished target is taken by another runner
    read -r t left <<< "$picked"
    held=$t
    # A few seconds more than the CPU still needed: start-up and corpus loading count as CPU too.
    seconds=$(( left + 15 < SLICE ? left + 15 : SLICE ))
    run_slice "$t" "$seconds"
    rmdir "$CAMPAIGN_DIR/lock-$t"
    held=""
done
echo "fuzz_campaign: every target has $GOAL CPU seconds" >&2
