#!/usr/bin/env bash
# Checks `sd serve` with the real AUTOMATIC1111 (`webuiapi`) and OpenAI (`openai`) Python clients:
# builds sd, starts `sd serve` on the tiny model on loopback, runs check_clients.py (pictures compared with
# `sd txt2img` / `sd inpaint` for the same seed), then stops the server by its pid (SIGTERM, expecting exit 0).
# Env: SD_CLIENT_VENV (venv folder, reused; default .build/clients-venv), SD_BUILD_CONFIG (debug|release),
# SD_CLIENTS_QUEUE=1: the same checks through a front of the shared queue (`sd serve --queue`, no model) with
# one `sd worker`, on a throwaway PostgreSQL 15 (docs/SCALING.md); everything it starts is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${SD_CLIENT_VENV:-.build/clients-venv}
CONFIG=${SD_BUILD_CONFIG:-debug}
MODEL=Models/tiny-sd1
CONTROLNET=Models/tiny-controlnet-sd1

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r Scripts/clients/requirements.txt

swift build -c "$CONFIG" --product sd
SD="$(swift build -c "$CONFIG" --show-bin-path)/sd"

OUT=$(mktemp -d)
PID=""
WORKER=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
    if [ -n "$WORKER" ]; then kill -TERM "$WORKER" 2>/dev/null || true; fi
    if [ -f "$OUT/pg/postmaster.pid" ]; then kill -INT "$(head -1 "$OUT/pg/postmaster.pid")" 2>/dev/null || true; sleep 1; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

if [ "${SD_CLIENTS_QUEUE:-0}" = 1 ]; then
    PGBIN=/usr/lib/postgresql/15/bin
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    if [ "$(id -u)" = 0 ]; then chown postgres "$OUT"; chmod 777 "$OUT"; fi
    PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_pg "$PGBIN/initdb" -D "$OUT/pg" -U sd --auth=trust --no-sync >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$OUT/pg" -o "-p $PGPORT -k $OUT -c listen_addresses=127.0.0.1" -l "$OUT/pg.log" -w start >/dev/null
    QUEUE="postgres://sd@127.0.0.1:$PGPORT/postgres"
    "$SD" queue migrate --queue "$QUEUE"
    "$SD" worker --queue "$QUEUE" --model "$MODEL" --controlnet "$CONTROLNET" --name clients-worker > "$OUT/worker.out" 2> "$OUT/worker.err" &
    WORKER=$!
    for _ in $(seq 1 300); do grep -q "ready" "$OUT/worker.out" 2>/dev/null && break; sleep 0.2; done
    grep -q "ready" "$OUT/worker.out" || { cat "$OUT/worker.err"; echo "sd worker did not start"; exit 1; }
    "$SD" serve --queue "$QUEUE" --port 0 --queue-size 4 > "$OUT/serve.out" 2> "$OUT/serve.err" &
else
    "$SD" serve --model "$MODEL" --controlnet "$CONTROLNET" --port 0 --queue-size 4 > "$OUT/serve.out" 2> "$OUT/serve.err" &
fi
PID=$!
for _ in $(seq 1 300); do
    grep -q "listening on" "$OUT/serve.out" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/serve.err"; echo "sd serve exited early"; exit 1; }
    sleep 0.2
done
PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$OUT/serve.out" | head -1)
[ -n "$PORT" ] || { cat "$OUT/serve.err"; echo "sd serve did not start in 60 s"; exit 1; }
echo "sd serve pid $PID on port $PORT"

# The interrupt check needs a job that lasts seconds: optimised builds are ~100x faster per pixel.
LONG_SIDE=64
if [ "$CONFIG" = release ]; then LONG_SIDE=384; fi
status=0
timeout 240 "$VENV/bin/python" Scripts/clients/check_clients.py --port "$PORT" --sd "$SD" --model "$MODEL" --controlnet "$CONTROLNET" --out "$OUT" \
    --long-side "$LONG_SIDE" || status=$?

kill -TERM "$PID"
exit_code=0
timeout 60 tail --pid="$PID" -f /dev/null || { echo "sd serve did not stop within 60 s of SIGTERM"; status=1; }
wait "$PID" || exit_code=$?
PID=""
if [ "$exit_code" -ne 0 ]; then echo "sd serve exited with $exit_code after SIGTERM (expected 0)"; status=1; fi
if [ -n "$WORKER" ]; then
    kill -TERM "$WORKER"
    wait "$WORKER" || { echo "sd worker exited with $? after SIGTERM (expected 0)"; status=1; }
    WORKER=""
fi
if [ "$status" -ne 0 ]; then tail -20 "$OUT/serve.err"; fi
exit "$status"
