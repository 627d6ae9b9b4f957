#!/usr/bin/env bash
# Detection benchmark: every attack scenario of `bulwark-sim scenario` run
# RUNS times against a real `bulwark server --dev`, then `benign` once with
# a large fleet; prints detection rate, time to detect and to contain, and
# false positives per scenario as markdown tables.
#
#   bench/detect.sh                          # 3 runs each, 100 devices; benign 1,000 devices
#   bench/detect.sh --runs 5
#   QUICK=1 bench/detect.sh                  # 1 run each, 20 devices, short warm-up
#   SCENARIOS="flood topic-scan" bench/detect.sh
#   DETECT_CONFIG=detect.toml bench/detect.sh   # detection settings for the server
#   BUILD=0 bench/detect.sh                  # the binaries already in $CARGO_TARGET_DIR/release
#
# What it does:
#  1. builds `bulwark` and `bulwark-sim` (cargo build --release);
#  2. starts `bulwark server --dev` in a temporary directory, API and MQTT
#     on loopback ports, API rate limits raised (enrollment of the fleets);
#     ==> DETECT_CONFIG hook: if DETECT_CONFIG names a file, its TOML is
#     appended to the server's --config file (detectors, playbooks, ...);
#  3. runs each scenario RUNS times (a fresh group of DEVICES devices each
#     run, WARMUP s of benign traffic, then the attack; TIMEOUT s to detect
#     and contain; each run's attacker source address is its own, so a
#     source alert from an earlier run is never reused), then `benign` once
#     with BENIGN_DEVICES devices over a simulated day of DAY_SECONDS;
#  4. appends each run's JSON line to target/bench/detect-<stamp>.jsonl and
#     prints the tables.
#
# Everything stays on loopback; every run is bounded by the sim's own
# limits and timeout(1); every process started here is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    q_devices=20 q_warmup=10 q_timeout=20 q_benign=100 q_day=120
    RUNS=${RUNS_QUICK:-1}
else
    q_devices=100 q_warmup=75 q_timeout=60 q_benign=1000 q_day=600
fi
DEVICES=${DEVICES:-$q_devices}
WARMUP=${WARMUP:-$q_warmup}
TIMEOUT=${TIMEOUT:-$q_timeout}             # slow-drift: 5x this (default 300 s)
BENIGN_DEVICES=${BENIGN_DEVICES:-$q_benign}
DAY_SECONDS=${DAY_SECONDS:-$q_day}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.41}
SCENARIOS=${SCENARIOS:-"credential-stuffing topic-scan flood exfiltration cloned-certificate port-scan downgrade slow-drift"}
DETECT_CONFIG=${DETECT_CONFIG:-}

for tool in jq ss timeout; do
    command -v "$tool" >/dev/null || { echo "bench/detect.sh needs $tool" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

if [[ ${BUILD:-1} != 0 ]]; then
    timeout 1800 cargo build --release -p bulwark-server -p bulwark-sim
fi
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
BULWARK=$BIN/bulwark
SIM=$BIN/bulwark-sim

mkdir -p target/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$PWD/target/bench/detect-$STAMP.jsonl
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for p in $(shuf -i 20000-32000 -n 100); do
        if ! ss -Htan "( sport = :$p )" | grep -q .; then
            echo "$p"
            return
        fi
    done
    echo "no free port found" >&2
    exit 1
}

# ---- server ------------------------------------------------------------------
MPORT=$(free_port)
cat >"$WORK/bulwark.toml" <<'TOML'
[limits]
per_ip_per_sec = 1000000
per_ip_burst = 1000000
per_token_per_sec = 1000000
per_token_burst = 1000000
TOML
# ==> DETECT_CONFIG hook: the detection engine's settings go into the same
# --config file the server reads.
if [[ -n $DETECT_CONFIG ]]; then
    [[ -f $DETECT_CONFIG ]] || { echo "DETECT_CONFIG=$DETECT_CONFIG: no such file" >&2; exit 1; }
    { echo; cat "$DETECT_CONFIG"; } >>"$WORK/bulwark.toml"
    echo "## detection config: $DETECT_CONFIG" >&2
fi
env -u RUST_LOG -u BULWARK_PASSPHRASE "$BULWARK" server --dev --data-dir "$WORK/data" \
    --api-addr 127.0.0.1:0 --mqtt-addr "127.0.0.1:$MPORT" --config "$WORK/bulwark.toml" \
    >/dev/null 2>>"$WORK/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 1 600); do
    grep -qs BULWARK_CACERT "$WORK/data/dev.env" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
grep -qs BULWARK_CACERT "$WORK/data/dev.env" || { echo "server did not start within 60 s" >&2; exit 1; }
# shellcheck disable=SC1091
source "$WORK/data/dev.env"
export BULWARK_ADDR BULWARK_TOKEN BULWARK_CACERT BULWARK_MQTT_ADDR
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $CPU_MODEL; commit $(git rev-parse --short HEAD)" >&2
echo "## bulwark pid $SERVER_PID: API $BULWARK_ADDR, MQTT $BULWARK_MQTT_ADDR" >&2

# ---- runs --------------------------------------------------------------------
# Attacker addresses: 127.0.0.100 upwards, a fresh pair for every run.
next_ip=100
run_one() { # scenario devices extra-args...
    local scenario=$1 devices=$2
    shift 2
    local attacker="127.0.0.$next_ip" clone="127.0.0.$((next_ip + 1))"
    next_ip=$((next_ip + 2))
    ((next_ip < 250)) || next_ip=100
    local budget=$((900 + WARMUP + TIMEOUT * 5 + DAY_SECONDS + 120))
    echo "## $scenario: $devices devices (attacker $attacker)" >&2
    if timeout --signal=KILL "$budget" "$SIM" scenario "$scenario" --devices "$devices" \
        --warmup "$WARMUP" --source-ips "$SOURCE_IPS" --attacker-ip "$attacker" \
        --clone-ip "$clone" --work-dir "$WORK/certs" "$@" \
        >"$WORK/out.json" 2>"$WORK/sim.log"; then
        tail -1 "$WORK/out.json" >>"$RESULTS"
        tail -1 "$WORK/out.json" | jq -c '{scenario, detected, time_to_detect_ms, time_to_contain_ms, detector, false_positive_devices, alerts}' >&2
    else
        echo "warning: $scenario failed; its log:" >&2
        tail -20 "$WORK/sim.log" >&2
        jq -cn --arg s "$scenario" --argjson n "$devices" \
            '{scenario: $s, devices: $n, setup_failed: true, detected: false,
              time_to_detect_ms: null, time_to_contain_ms: null, false_positive_devices: null}' >>"$RESULTS"
    fi
    rm -rf "$WORK/certs"
}

for scenario in $SCENARIOS; do
    t=$TIMEOUT
    [[ $scenario == slow-drift ]] && t=$((TIMEOUT * 5))
    for _ in $(seq 1 "$RUNS"); do
        run_one "$scenario" "$DEVICES" --timeout "$t"
    done
done
run_one benign "$BENIGN_DEVICES" --day-seconds "$DAY_SECONDS" --concurrency 64

# ---- tables ------------------------------------------------------------------
echo
echo "Detection benchmark: $RUNS runs per attack, $DEVICES devices, ${WARMUP} s warm-up," \
    "timeout ${TIMEOUT} s ($((TIMEOUT * 5)) s for slow-drift); benign: $BENIGN_DEVICES devices," \
    "a ${DAY_SECONDS} s day. $(nproc) cores ($CPU_MODEL), commit $(git rev-parse --short HEAD)," \
    "$(date -u +%F)${DETECT_CONFIG:+, detection config $DETECT_CONFIG}. Raw results: ${RESULTS#"$PWD"/}"
for scenario in $SCENARIOS; do
    echo
    echo "### $scenario"
    echo
    echo "| detection rate | time to detect, median / worst | time to contain, median / worst | first detector | FP devices (max) | setup failures |"
    echo "|---:|---:|---:|---|---:|---:|"
    jq -rs --arg s "$scenario" '
        def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
        def fmt: if . == null then "-" else "\(.) ms" end;
        [.[] | select(.scenario == $s)] as $r
        | ($r | map(select(.setup_failed | not))) as $ok
        | ($ok | map(select(.detected))) as $d
        | ($d | map(.time_to_detect_ms)) as $ttd
        | ($ok | map(.time_to_contain_ms | select(. != null))) as $ttc
        | "| \($d | length)/\($r | length) "
          + "| \($ttd | med | fmt) / \(if ($d | length) < ($r | length) then "not detected" else ($ttd | max | fmt) end) "
          + "| \($ttc | med | fmt) / \(if ($ttc | length) < ($r | length) then "not contained" else ($ttc | max | fmt) end) "
          + "| \([$d[].detector] | unique | join(", ") | if . == "" then "-" else . end) "
          + "| \([$ok[].false_positive_devices] | max // "-") "
          + "| \(($r | length) - ($ok | length)) |"
    ' "$RESULTS"
done
echo
echo "### benign"
echo
echo "| devices | simulated day | FP devices | FP device-hours / device-hours | ratio | alerts |"
echo "|---:|---:|---:|---:|---:|---:|"
jq -rs '
    [.[] | select(.scenario == "benign")] | last
    | if . == null or .setup_failed then "| - | - | - | - | - | - |"
      else "| \(.devices) | \(.day_seconds) s | \(.false_positive_devices) "
         + "| \(.false_positive_device_hours) / \(.device_hours) "
         + "| \(.false_positive_device_hours_ratio * 1e6 | round / 1e6) | \(.alerts) |" end
' "$RESULTS"
