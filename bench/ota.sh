#!/usr/bin/env bash
# OTA rollout benchmark: DEVICES simulated devices (bulwark-sim ota) take a
# SIZE_MIB artifact through a staged rollout of a real `bulwark server --dev`.
#
#   bench/ota.sh                    # 1,000 devices, 16 MiB
#   QUICK=1 bench/ota.sh            # 100 devices, 4 MiB
#   DEVICES=500 SIZE_MIB=8 PHASES=10,10%,100% CONCURRENCY=32 bench/ota.sh
#
# What it does:
#  1. builds `bulwark` and `bulwark-sim` (cargo build --release);
#  2. starts `bulwark server --dev` in a temporary directory, API and MQTT
#     on loopback ports, per-address and per-token API rate limits raised
#     (all devices' HTTPS comes from a few loopback addresses);
#  3. enrolls DEVICES devices into group `ota-bench` over EST;
#  4. publishes a release of SIZE_MIB random bytes for hardware model
#     `bench-hw` (dev mode signs the targets metadata);
#  5. starts `bulwark-sim ota` (every device connected and subscribed to its
#     command topic before the rollout starts; downloads and TUF datastores
#     on /dev/shm when it exists, so the disk stays out of the numbers);
#  6. creates the rollout (PHASES, no soak, device timeout 30 min) and waits
#     until it is completed, sampling the server's CPU time (utime + stime,
#     /proc/PID/stat) and RSS (VmRSS, and VmHWM for the peak) every 0.5 s;
#  7. prints a markdown table.
#
# Everything stays on loopback; every step runs under timeout(1) and the
# rollout under MAX_SECONDS; every process started here is stopped on exit.
# The load generator (1,000 devices' TLS, TUF verification and hashing)
# shares the machine's cores with the server.
set -euo pipefail

cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    q_devices=100 q_size=4
else
    q_devices=1000 q_size=16
fi
DEVICES=${DEVICES:-$q_devices}
SIZE_MIB=${SIZE_MIB:-$q_size}
PHASES=${PHASES:-10,10%,100%}
CONCURRENCY=${CONCURRENCY:-32}       # updates in flight in the sim (server: 64 downloads)
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.60}
MAX_SECONDS=${MAX_SECONDS:-900}      # the rollout, from creation to completed
MODEL=bench-hw
RELEASE=bench-fw-1

for tool in curl jq ss timeout; do
    command -v "$tool" >/dev/null || { echo "bench/ota.sh needs $tool" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

timeout 1800 cargo build --release -p bulwark-server -p bulwark-sim
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
BULWARK=$BIN/bulwark
SIM=$BIN/bulwark-sim

mkdir -p target/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$PWD/target/bench/ota-$STAMP.json
WORK=$(mktemp -d)
SIMWORK=$WORK
[[ -d /dev/shm && -w /dev/shm ]] && SIMWORK=$(mktemp -d -p /dev/shm bulwark-ota-bench.XXXXXX)
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
    [[ $SIMWORK == "$WORK" ]] || rm -rf "$SIMWORK"
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
export BULWARK_ADDR BULWARK_TOKEN BULWARK_CACERT
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $CPU_MODEL; commit $(git rev-parse --short HEAD)" >&2
echo "## bulwark pid $SERVER_PID: API $BULWARK_ADDR, MQTT 127.0.0.1:$MPORT" >&2

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# ---- devices and release -------------------------------------------------------
timeout 900 "$SIM" enroll --count "$DEVICES" --group ota-bench --out "$WORK/certs" --concurrency 32 >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/fw.img"
timeout 300 "$BULWARK" ota release create "$WORK/fw.img" --name "$RELEASE" --version 1.0.0 \
    --hardware "$MODEL" >&2

# ---- simulated devices ---------------------------------------------------------
timeout --signal=KILL $((MAX_SECONDS + 300)) "$SIM" ota --dir "$WORK/certs" --devices "$DEVICES" \
    --model "$MODEL" --broker "127.0.0.1:$MPORT" --concurrency "$CONCURRENCY" \
    --source-ips "$SOURCE_IPS" --work-dir "$SIMWORK" --ready-file "$WORK/ready" \
    --max-seconds $((MAX_SECONDS + 240)) >"$RESULTS" 2>"$WORK/sim.log" &
SIM_PID=$!
PIDS+=("$SIM_PID")
for _ in $(seq 1 2400); do
    [[ -s $WORK/ready ]] && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.log" >&2; exit 1; }
    sleep 0.1
done
[[ -s $WORK/ready ]] || { echo "devices not subscribed within 240 s" >&2; exit 1; }
read -r UP DOWN <"$WORK/ready"
echo "## $UP devices subscribed ($DOWN failed)" >&2
sleep 1

# ---- rollout -------------------------------------------------------------------
RSS0=$(status_kib "$SERVER_PID" VmRSS)
CPU0=$(cpu_ticks "$SERVER_PID")
T0=$(date +%s.%N)
ROLLOUT=$(timeout 60 "$BULWARK" --output json ota rollout create --release "$RELEASE" \
    --group ota-bench --phases "$PHASES" --soak 0 --device-timeout 30m | jq -r .id)
echo "## rollout $ROLLOUT created: phases $PHASES" >&2
STATUS=running RSS_MAX=$RSS0 last=0
while :; do
    rss=$(status_kib "$SERVER_PID" VmRSS)
    ((rss > RSS_MAX)) && RSS_MAX=$rss
    STATUS=$(curl -sS --max-time 10 --cacert "$BULWARK_CACERT" -H "Authorization: Bearer $BULWARK_TOKEN" \
        "$BULWARK_ADDR/v1/ota/rollouts/$ROLLOUT" | jq -r .status 2>/dev/null || echo unknown)
    [[ $STATUS == completed || $STATUS == cancelled || $STATUS == paused ]] && break
    now=$(date +%s)
    if ((now - last >= 10)); then
        echo "  rollout $STATUS, $(tail -1 "$WORK/sim.log")" >&2
        last=$now
    fi
    if (($(date +%s) - ${T0%.*} > MAX_SECONDS)); then
        echo "the rollout did not complete within $MAX_SECONDS s" >&2
        STATUS="timed out ($STATUS)"
        break
    fi
    sleep 0.5
done
T1=$(date +%s.%N)
CPU1=$(cpu_ticks "$SERVER_PID")
HWM=$(status_kib "$SERVER_PID" VmHWM)
echo "## rollout $STATUS" >&2

# The sim ends by itself once every device finished.
for _ in $(seq 1 600); do
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
done
wait "$SIM_PID" || echo "warning: bulwark-sim ota exited with an error; see below" >&2
tail -3 "$WORK/sim.log" >&2
SUMMARY=$(tail -1 "$RESULTS")
[[ -n $SUMMARY ]] || { echo "no summary from bulwark-sim ota" >&2; exit 1; }
curl -sS --max-time 10 --cacert "$BULWARK_CACERT" -H "Authorization: Bearer $BULWARK_TOKEN" \
    "$BULWARK_ADDR/v1/ota/rollouts/$ROLLOUT" >"$WORK/rollout.json" || true

secs=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }')
cpu=$(awk -v a="$CPU0" -v b="$CPU1" 'BEGIN { printf "%.1f", (b - a) / 100 }')
cores=$(awk -v c="$cpu" -v s="$secs" 'BEGIN { printf "%.2f", (s > 0 ? c / s : 0) }')
j() { jq -r "$1" <<<"$SUMMARY"; }
jq -c --arg status "$STATUS" --arg secs "$secs" --arg cpu "$cpu" --argjson rss0 "$RSS0" \
    --argjson rssmax "$RSS_MAX" --argjson hwm "$HWM" \
    '. + {rollout_status: $status, rollout_seconds: ($secs | tonumber), server_cpu_seconds: ($cpu | tonumber),
          server_rss_before_kib: $rss0, server_rss_max_kib: $rssmax, server_vmhwm_kib: $hwm}' \
    <<<"$SUMMARY" >>"$RESULTS"

echo
echo "$DEVICES devices, ${SIZE_MIB} MiB artifact, phases $PHASES (no soak), $CONCURRENCY updates in flight" \
    "in the sim, $(nproc) cores ($CPU_MODEL), commit $(git rev-parse --short HEAD), $(date -u +%F)." \
    "Raw result: ${RESULTS#"$PWD"/}"
echo
echo "| measure | value |"
echo "|---|---:|"
echo "| rollout status | $STATUS |"
echo "| devices healthy / failed | $(j .completed) / $(j .failed) of $(j .devices) |"
echo "| time to complete: rollout created → status completed | $secs s |"
echo "| first notification → last \`healthy\` (sim) | $(j .total_seconds) s |"
echo "| server CPU during the rollout | $cpu s ($cores cores on average) |"
echo "| server RSS before → max sampled (peak VmHWM since start) | $((RSS0 / 1024)) → $((RSS_MAX / 1024)) MiB ($((HWM / 1024)) MiB) |"
echo "| per-device update time, notification → \`healthy\` accepted, p50 / p99 | $(j .update_ms.p50) / $(j .update_ms.p99) ms |"
echo "| same without the wait for a sim update slot, p50 / p99 | $(j .active_update_ms.p50) / $(j .active_update_ms.p99) ms |"
echo "| device: metadata verification (tough load + check), median | $(j .metadata_verify_ms_median) ms |"
echo "| device: artifact download, median | $(j .download_ms_median) ms |"
echo "| device: artifact verification (length + SHA-256), median | $(j .artifact_verify_ms_median) ms ($(j .artifact_verify_mb_per_s_median) MB/s) |"
echo "| requests retried after 429/503 | $(j .retries) |"
