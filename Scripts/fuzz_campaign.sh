#!/usr/bin/env bash
# A long fuzzing campaign on a shared machine: one fuzzer at a time at nice 10, rotating SLICE-second runs
# over the targets until each has GOAL CPU seconds, then it stops by itself. Corpora persist outside the
# repository in $CAMPAIGN_DIR/<target>/ (crashes in $CAMPAIGN_DIR/artifacts/); every run appends one line
# to $CAMPAIGN_DIR/log.tsv: time, target, slice, cpu_s (user+sys), execs, cov, ft, corpus, exit status.
#   setsid nohup Scripts/fuzz_campaign.sh > /work/fuzz-campaign/runner.out 2>&1 &
#   awk -F'\t' 'NR>1 {cpu[$2]+=$4; ex[$2]+=$5} END {for (t in cpu) print t, cpu[t], ex[t]}' /work/fuzz-campaign/log.tsv
# Two runners on disjoint targets use two cores (the log is shared; each appends whole lines):
#   CAMPAIGN_TARGETS="torch server" CAMPAIGN_RUNNER=a setsid nohup Scripts/fuzz_campaign.sh ... &
set -uo pipefail
cd "$(dirname "$0")/.."
CAMPAIGN_DIR=${CAMPAIGN_DIR:-/work/fuzz-campaign}
GOAL=${GOAL:-1800}
SLICE=${SLICE:-600}
ROUNDS=${ROUNDS:-0}  # stop after this many rotations (0: only when every target has GOAL)
read -r -a TARGETS <<< "${CAMPAIGN_TARGETS:-safetensors torch config tokenizer image depthmap adapters singlefile server}"
pidfile="$CAMPAIGN_DIR/runner${CAMPAIGN_RUNNER:+-$CAMPAIGN_RUNNER}.pid"
log="$CAMPAIGN_DIR/log.tsv"
mkdir -p "$CAMPAIGN_DIR/runs"
[ -f "$log" ] || printf 'time\ttarget\tslice_s\tcpu_s\texecs\tcov\tft\tcorpus\tstatus\n' > "$log"
echo $$ > "$pidfile"

[ "${FUZZ_NO_BUILD:-0}" = 1 ] || FUZZ_BUILD_ONLY=1 nice -n 10 Scripts/fuzz.sh || { echo "fuzz_campaign: build failed" >&2; exit 1; }

cpu_so_far() { awk -F'\t' -v t="$1" 'NR>1 && $2==t {s+=$4} END {printf "%d", s}' "$log"; }

round=0
while true; do
    round=$((round + 1))
    ran=0
    for t in "${TARGETS[@]}"; do
        done_s=$(cpu_so_far "$t")
        [ "$done_s" -ge "$GOAL" ] && continue
        ran=1
        out="$CAMPAIGN_DIR/runs/$t-$(date +%Y%m%d-%H%M%S).log"
        FUZZ_WORK="$CAMPAIGN_DIR" FUZZ_NO_BUILD=1 /usr/bin/time -f '%U+%S' -o "$out.time" \
            nice -n 10 Scripts/fuzz.sh "$t" "$SLICE" > "$out" 2>&1
        status=$?
        cpu=$(tail -1 "$out.time" | awk '{split($0, a, "+"); printf "%d", a[1] + a[2]}')  # (GNU time may first note the exit status)
        execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$out" | tail -1 | awk '{print $2}')
        last=$(grep -E '^#[0-9]+.*cov: ' "$out" | tail -1)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
        corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<< "$last")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -Is)" "$t" "$SLICE" "${cpu:-0}" "${execs:-0}" "${cov:-}" "${ft:-}" "${corp:-}" "$status" >> "$log"
    done
    [ "$ran" = 0 ] && break
    [ "$ROUNDS" -gt 0 ] && [ "$round" -ge "$ROUNDS" ] && { rm -f "$pidfile"; exit 0; }
done
echo "fuzz_campaign: every target has $GOAL CPU seconds" >&2
rm -f "$pidfile"
