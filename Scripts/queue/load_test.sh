#!/usr/bin/env bash
# The shared queue under a bounded load on loopback (docs/SCALING.md, Capacity): a throwaway PostgreSQL 15,
# 2 fronts and 2 workers on the tiny model, REQUESTS txt2img requests from CONCURRENCY clients (load_test.py),
# then the queue's own overhead per job from the jobs table: submission to claim, and finish to fetch.
# For comparison, the same load on one plain `sd serve` (the in-memory queue). Everything it starts is
# stopped by pid at the end. Usage: Scripts/queue/load_test.sh [REQUESTS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS="${1:-300}"; CONCURRENCY="${2:-30}"
SD="${SD:-.build/release/sd}"; MODEL=Models/tiny-sd1; PGBIN=/usr/lib/postgresql/15/bin
WORK="$(mktemp -d)"; PIDS=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/pg/postmaster.pid" ] && kill -INT "$(head -1 "$WORK/pg/postmaster.pid")" 2>/dev/null || true
    sleep 1; rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U sd --auth=trust --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1" -l "$WORK/pg.log" -w start >/dev/null
URL="postgres://sd@127.0.0.1:$PORT/postgres"
"$SD" queue migrate --queue "$URL"
wait_for() { for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no '$2' in $1" >&2; exit 1; }
for w in 1 2; do "$SD" worker --queue "$URL" --model "$MODEL" --name "w$w" > "$WORK/w$w.out" 2> "$WORK/w$w.err" & PIDS+=($!); wait_for "$WORK/w$w.out" ready; done
FRONTS=()
for f in 1 2; do
    "$SD" serve --queue "$URL" --port 0 --name "f$f" --queue-size 64 > "$WORK/f$f.out" 2> "$WORK/f$f.err" & PIDS+=($!)
    wait_for "$WORK/f$f.out" "listening on"
    FRONTS+=(--front "127.0.0.1:$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/f$f.out")")
done
sleep 2  # the fronts' first refresh of the live models
echo "queue (2 fronts, 2 workers):"
python3 Scripts/queue/load_test.py "${FRONTS[@]}" --requests "$REQUESTS" --concurrency "$CONCURRENCY"
"$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U sd -d postgres -At -c "
    SELECT 'per job (ms): submit->claim p50 ' || round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))::numeric, 1)
        || ', run p50 ' || round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))::numeric, 1)
        || ', finish->fetch p50 ' || round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM fetched_at - finished_at))::numeric, 1)
        || ', jobs ' || count(*) || ', attempts>1: ' || count(*) FILTER (WHERE attempt > 1)
    FROM sd_jobs WHERE state = 'succeeded'"
# Every job ended, exactly once: none left queued or running.
LEFT=$("$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U sd -d postgres -At -c "SELECT count(*) FROM sd_jobs WHERE state IN ('queued', 'running')")
[ "$LEFT" = 0 ] || { echo "$LEFT jobs left queued or running" >&2; exit 1; }
"$SD" serve --model "$MODEL" --port 0 --queue-size 64 > "$WORK/plain.out" 2> "$WORK/plain.err" & PIDS+=($!)
wait_for "$WORK/plain.out" "listening on"
echo "plain sd serve (one process, in-memory queue):"
python3 Scripts/queue/load_test.py --front "127.0.0.1:$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/plain.out")" \
    --requests "$REQUESTS" --concurrency "$CONCURRENCY"
