#!/usr/bin/env bash
# End-to-end EST benchmark against a real `bulwark server --dev` on 127.0.0.1.
#
#   bench/run.sh                  # 5 repetitions of concurrency 1, 8, 32, 64
#   REPS=3 LEVELS="8 32" N=2000 bench/run.sh
#
# Per repetition: a fresh dev server in a temporary directory (per-IP and
# per-token rate limits raised so one address can load it), then for each
# concurrency level the `health` baseline (GET /v1/health: TLS + HTTP only)
# and `est-enroll` (N enrollments: CSR check, signing, durable SQLite commit,
# audit entries), then the server is stopped. The raw JSON lines are kept in
# target/bench/; the medians are printed as a markdown table at the end.
# The server's data directory comes from mktemp -d, so TMPDIR chooses the
# disk it lives on.
#
# Load goes only to 127.0.0.1, every run is bounded in count (N, HEALTH_N)
# and time (MAX_SECONDS, enforced again with timeout(1)), and the server is
# killed on exit whatever happens. The load generator runs on the same
# machine as the server and competes with it for the same cores.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${REPS:-5}
N=${N:-3000}
HEALTH_N=${HEALTH_N:-20000}
LEVELS=${LEVELS:-"1 8 32 64"}
MAX_SECONDS=${MAX_SECONDS:-120}

cargo build --release -p bulwark-server -p bulwark-bench
BULWARK=$PWD/target/release/bulwark
BENCH=$PWD/target/release/bulwark-bench

mkdir -p target/bench
RESULTS=$PWD/target/bench/est-$(date -u +%Y%m%dT%H%M%SZ).jsonl
WORK=$(mktemp -d)
SERVER_PID=

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cat >"$WORK/bulwark.toml" <<'TOML'
[limits]
per_ip_per_sec = 1000000
per_ip_burst = 1000000
per_token_per_sec = 1000000
per_token_burst = 1000000
TOML

start_server() {
    local data=$WORK/data-$1
    env -u RUST_LOG -u BULWARK_PASSPHRASE "$BULWARK" server --dev \
        --data-dir "$data" --api-addr 127.0.0.1:0 --config "$WORK/bulwark.toml" \
        >/dev/null 2>>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        if grep -qs BULWARK_CACERT "$data/dev.env"; then
            # shellcheck disable=SC1091
            source "$data/dev.env"
            export BULWARK_ADDR BULWARK_TOKEN BULWARK_CACERT
            return
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "server did not start within 60 s" >&2
    exit 1
}

bench() {
    timeout --signal=KILL $((MAX_SECONDS + 120)) "$BENCH" "$@" \
        --server-pid "$SERVER_PID" --max-seconds "$MAX_SECONDS" | tee -a "$RESULTS"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
for rep in $(seq 1 "$REPS"); do
    start_server "$rep"
    echo "## repetition $rep/$REPS: server pid $SERVER_PID at $BULWARK_ADDR" >&2
    for c in $LEVELS; do
        bench health --requests "$HEALTH_N" --concurrency "$c"
        bench est-enroll --enrollments "$N" --concurrency "$c"
    done
    stop_server
done

echo
echo "Medians of $REPS repetition(s); N=$N enrollments and $HEALTH_N health requests per run; raw results: ${RESULTS#"$PWD"/}"
echo
"$BENCH" report "$RESULTS"
