#!/usr/bin/env bash
# MQTT benchmark: Bulwark's gateway and Mosquitto, same machine, same run,
# same device certificates, same load generator (bulwark-sim).
#
#   bench/mqtt.sh                         # about 5 minutes
#   QUICK=1 bench/mqtt.sh                 # under a minute: 1 repetition, short runs
#   REPS=5 DURATION=10 IDLE_N=19000 bench/mqtt.sh
#   BROKERS=mosquitto bench/mqtt.sh       # one broker only
#   SCENARIOS=connect-rate IDLE_N=100 bench/mqtt.sh   # connection setup only
#   BUILD=0 bench/mqtt.sh                 # the binaries already in $CARGO_TARGET_DIR/release
#
# What it does:
#  1. builds `bulwark` and `bulwark-sim` (cargo build --release);
#  2. starts `bulwark server --dev --mqtt-addr 127.0.0.1:<port>` in a
#     temporary directory (API rate limits raised, as in bench/run.sh),
#     enrolls DEVICES devices into group `bench` over EST, and creates and
#     attaches the `bench` policy through the API;
#  3. starts a second Mosquitto on another loopback port: TLS with a server
#     certificate from a throw-away CA made here with openssl,
#     `require_certificate true`, `cafile` = Bulwark's CA chain (root and
#     issuing CA, from the API: the same device certificates authenticate
#     to both brokers),
#     `use_identity_as_username true`, persistence off, Mosquitto's default
#     inflight (20) and queue (1000) limits;
#  4. measures idle connections first (IDLE_N connections opened by
#     IDLE_PROCS sim processes from the 127.0.0.x addresses in SOURCE_IPS;
#     broker RSS read from /proc before and once all are up), then runs
#     connect-rate, fan-in, fan-out and latency REPS times against each
#     broker in turn with identical parameters;
#  5. prints the medians as a markdown table (Bulwark, Mosquitto, ratio).
#
# If Bulwark's gateway does not accept an MQTT session (not written yet),
# its column says "pending" and only Mosquitto is measured.
#
# Load goes only to loopback addresses; every run is bounded by --duration,
# --max-seconds and timeout(1); every process started here is stopped on
# exit. The system's Mosquitto on port 1883 is never touched. The load
# generator shares the machine's cores with the broker under test.
set -euo pipefail

cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    q_reps=1 q_dur=2 q_idle=1000 q_hold=2 q_fanin=10 q_fanout=10 q_lat=5 q_procs=1
else
    q_reps=3 q_dur=5 q_idle=19500 q_hold=10 q_fanin=50 q_fanout=50 q_lat=20 q_procs=2
fi
REPS=${REPS:-$q_reps}                     # repetitions of each message scenario
DURATION=${DURATION:-$q_dur}              # seconds per scenario run
QOS=${QOS:-1}
MQTT=${MQTT:-5}                           # 5 or 3.1.1
PAYLOAD=${PAYLOAD:-64}                    # bytes per message
CONNECT_C=${CONNECT_C:-16}                # connect-rate workers
CONNECT_DEVICES=${CONNECT_DEVICES:-1000}  # connect-rate: devices cycled through
FANIN_N=${FANIN_N:-$q_fanin}              # fan-in publishers
FANOUT_N=${FANOUT_N:-$q_fanout}           # fan-out subscribers
LAT_N=${LAT_N:-$q_lat}                    # latency publishers
LAT_RATE=${LAT_RATE:-2000}                # latency: messages/s in total
WINDOW=${WINDOW:-16}                      # QoS 1 messages in flight per publisher
IDLE_N=${IDLE_N:-$q_idle}                 # idle connections per broker
IDLE_HOLD=${IDLE_HOLD:-$q_hold}           # seconds the idle connections are held
IDLE_PROCS=${IDLE_PROCS:-$q_procs}        # sim processes sharing the idle connections
IDLE_C=${IDLE_C:-32}                      # idle: handshakes in flight per process
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.60}
BROKERS=${BROKERS:-"bulwark mosquitto"}
SCENARIOS=${SCENARIOS:-"connect-rate fan-in fan-out latency"}
MOSQUITTO=${MOSQUITTO:-mosquitto}
MAX_SECONDS=$((DURATION + 120))

need=$((IDLE_N > FANIN_N + 1 ? IDLE_N : FANIN_N + 1))
need=$((need > FANOUT_N + 1 ? need : FANOUT_N + 1))
need=$((need > CONNECT_DEVICES ? need : CONNECT_DEVICES))
DEVICES=${DEVICES:-$need}

command -v "$MOSQUITTO" >/dev/null || MOSQUITTO=/usr/sbin/mosquitto
for tool in "$MOSQUITTO" openssl curl ss timeout; do
    command -v "$tool" >/dev/null || { echo "bench/mqtt.sh needs $tool" >&2; exit 1; }
done

# One sim process holds IDLE_N / IDLE_PROCS connections, and each broker
# holds IDLE_N: both need that many open files.
ulimit -n "$(ulimit -Hn)"
if ((IDLE_N + 200 > $(ulimit -n))); then
    echo "warning: IDLE_N=$IDLE_N is close to the open-files limit $(ulimit -n) (hard);" \
        "the brokers may refuse connections (EMFILE)" >&2
fi

BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
if [[ ${BUILD:-1} == 1 ]]; then
    cargo build --release -p bulwark-server -p bulwark-sim
else
    [[ -x $BIN/bulwark && -x $BIN/bulwark-sim ]] || { echo "BUILD=0: no binaries in $BIN" >&2; exit 1; }
fi
BUILD_SECONDS=$SECONDS
BULWARK=$BIN/bulwark
SIM=$BIN/bulwark-sim

mkdir -p target/bench
RESULTS=$PWD/target/bench/mqtt-$(date -u +%Y%m%dT%H%M%SZ).jsonl
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
        if [[ $p != 1883 ]] && ! ss -Htan "( sport = :$p )" | grep -q .; then
            echo "$p"
            return
        fi
    done
    echo "no free port found" >&2
    exit 1
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

wait_listening() { # port pid what
    for _ in $(seq 1 300); do
        ss -Hltn "( sport = :$1 )" | grep -q . && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- Bulwark ---------------------------------------------------------------
BPORT=$(free_port)
# The API's per-address and per-token limits are raised as in bench/run.sh
# (all the load comes from one operator token). The gateway's per-device
# publish rate and reconnect (flap) limits are raised too: they are security
# limits, and the benchmark measures capacity. Its inflight window and
# queue stay at their defaults, like Mosquitto's. Detection runs on every
# event (it is what the gateway pays for), but no playbook responds: the
# load generator's publishers are floods by the built-in rules, and a
# throttle would end the measurement.
cat >"$WORK/bulwark-api.toml" <<'TOML'
playbooks = []
[limits]
per_ip_per_sec = 1000000
per_ip_burst = 1000000
per_token_per_sec = 1000000
per_token_burst = 1000000
TOML
cat "$WORK/bulwark-api.toml" - >"$WORK/bulwark.toml" <<'TOML'
[mqtt]
publish_rate = 1000000.0
publish_burst = 1000000.0
publish_bytes_rate = 1000000000.0
publish_bytes_burst = 1000000000.0
flap_max_connects = 1000000
TOML
PLAIN=()
if "$BULWARK" server --help 2>/dev/null | grep -q -- --dev-mqtt-plain-addr; then
    PLAIN=(--dev-mqtt-plain-addr "127.0.0.1:$(free_port)")
fi
start_bulwark() { # config file; 0 once dev.env is written
    rm -rf "$WORK/bulwark"
    env -u RUST_LOG -u BULWARK_PASSPHRASE "$BULWARK" server --dev --data-dir "$WORK/bulwark" \
        --api-addr 127.0.0.1:0 --mqtt-addr "127.0.0.1:$BPORT" "${PLAIN[@]}" --config "$1" \
        >/dev/null 2>>"$WORK/bulwark.log" &
    BULWARK_PID=$!
    PIDS+=("$BULWARK_PID")
    for _ in $(seq 1 600); do
        grep -qs BULWARK_CACERT "$WORK/bulwark/dev.env" && return 0
        kill -0 "$BULWARK_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
if ! start_bulwark "$WORK/bulwark.toml"; then
    echo "warning: the server refused the [mqtt] limits (older build?); starting it without them:" >&2
    tail -3 "$WORK/bulwark.log" >&2
    start_bulwark "$WORK/bulwark-api.toml" || { cat "$WORK/bulwark.log" >&2; exit 1; }
fi
# shellcheck disable=SC1091
source "$WORK/bulwark/dev.env"
export BULWARK_ADDR BULWARK_TOKEN BULWARK_CACERT
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
echo "## bulwark pid $BULWARK_PID: API $BULWARK_ADDR, MQTT 127.0.0.1:$BPORT" >&2

"$SIM" enroll --count "$DEVICES" --group bench --out "$WORK/certs" --concurrency 32 | tee -a "$RESULTS"

api() { # method path [body]: prints the HTTP status
    curl -sS -o "$WORK/api.out" -w '%{http_code}' --max-time 10 --cacert "$BULWARK_CACERT" \
        -H "Authorization: Bearer $BULWARK_TOKEN" -H 'Content-Type: application/json' \
        -X "$1" "$BULWARK_ADDR$2" ${3:+--data "$3"} || echo 000
}
POLICY='{"version":1,"name":"bench","statements":[{"effect":"allow","actions":["publish","subscribe","receive"],"resources":["bench/#"]},{"effect":"allow","actions":["subscribe","receive"],"resources":["devices/+/telemetry"]}]}'
code=$(api POST /v1/policies "$POLICY")
[[ $code == 2* || $code == 409 ]] || echo "warning: POST /v1/policies answered $code: $(head -c 300 "$WORK/api.out")" >&2
code=$(api PUT /v1/groups/bench/policies/bench)
[[ $code == 2* ]] || echo "warning: PUT /v1/groups/bench/policies/bench answered $code: $(head -c 300 "$WORK/api.out")" >&2

# ---- Mosquitto -------------------------------------------------------------
# Device certificates come from Bulwark's issuing CA and are sent without
# their chain, so Mosquitto trusts the whole chain (issuing + root).
code=$(api GET /v1/ca/chain.pem)
if [[ $code == 2* ]] && grep -q BEGIN "$WORK/api.out"; then
    cat "$WORK/api.out" "$BULWARK_CACERT" >"$WORK/bulwark-chain.pem"
else
    echo "warning: GET /v1/ca/chain.pem answered $code; Mosquitto gets $BULWARK_CACERT only" >&2
    cp "$BULWARK_CACERT" "$WORK/bulwark-chain.pem"
fi
MPORT=$(free_port)
(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=bench-mosquitto-ca -keyout mosq-ca.key -out mosq-ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout mosq-server.key -out mosq-server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >mosq-server.ext
    openssl x509 -req -in mosq-server.csr -CA mosq-ca.pem -CAkey mosq-ca.key -CAcreateserial \
        -days 1 -extfile mosq-server.ext -out mosq-server.pem 2>/dev/null
)
cat >"$WORK/mosquitto.conf" <<CONF
# Throw-away benchmark broker (bench/mqtt.sh).
$( [[ $(id -u) == 0 ]] && echo "user root" )
per_listener_settings false
persistence false
allow_anonymous false
log_dest stderr
max_inflight_messages 20
max_queued_messages 1000
set_tcp_nodelay true
listener $MPORT 127.0.0.1
cafile $WORK/bulwark-chain.pem
certfile $WORK/mosq-server.pem
keyfile $WORK/mosq-server.key
require_certificate true
use_identity_as_username true
CONF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >/dev/null 2>>"$WORK/mosquitto.log" &
MOSQ_PID=$!
PIDS+=("$MOSQ_PID")
wait_listening "$MPORT" "$MOSQ_PID" || { cat "$WORK/mosquitto.log" >&2; exit 1; }
echo "## mosquitto pid $MOSQ_PID: $("$MOSQUITTO" -h 2>/dev/null | head -1), MQTT 127.0.0.1:$MPORT" >&2

target_args() { # broker
    case $1 in
        bulwark) echo "--broker 127.0.0.1:$BPORT --cafile $BULWARK_CACERT --broker-pid $BULWARK_PID --label bulwark" ;;
        mosquitto) echo "--broker 127.0.0.1:$MPORT --cafile $WORK/mosq-ca.pem --broker-pid $MOSQ_PID --label mosquitto" ;;
    esac
}
COMMON=(--certs "$WORK/certs" --server-name localhost --mqtt "$MQTT" --qos "$QOS"
    --payload "$PAYLOAD" --window "$WINDOW" --source-ips "$SOURCE_IPS")

sim_load() { # broker args...: one bounded run, its JSON line appended to RESULTS
    local broker=$1 out
    shift
    # shellcheck disable=SC2046
    if out=$(timeout --signal=KILL $((MAX_SECONDS + 60)) "$SIM" load $(target_args "$broker") \
        "${COMMON[@]}" --max-seconds "$MAX_SECONDS" "$@"); then
        echo "$out" | tee -a "$RESULTS"
    else
        echo "warning: bulwark-sim load $* against $broker failed" >&2
    fi
}

# Does Bulwark's gateway take an MQTT session at all?
ACTIVE=()
for b in $BROKERS; do
    if [[ $b == bulwark ]]; then
        # shellcheck disable=SC2046
        probe=$("$SIM" load $(target_args bulwark) "${COMMON[@]}" --scenario connect-rate \
            --clients 1 --concurrency 1 --duration 1 --connect-timeout 3 --max-seconds 30 2>/dev/null || true)
        if [[ $probe != *'"setups":0'* && $probe == *'"setups":'* ]]; then
            ACTIVE+=(bulwark)
        else
            echo "## Bulwark's MQTT gateway does not accept sessions on 127.0.0.1:$BPORT;" \
                "its column is pending. Probe: ${probe:-no answer}" >&2
        fi
    else
        ACTIVE+=("$b")
    fi
done

pid_of() { [[ $1 == bulwark ]] && echo "$BULWARK_PID" || echo "$MOSQ_PID"; }

# ---- idle connections and broker memory ---------------------------------------
idle_run() { # broker
    local broker=$1 pid per p first n rss0 rss1 up=0 failed=0 secs=0 ready sims=()
    pid=$(pid_of "$broker")
    per=$(((IDLE_N + IDLE_PROCS - 1) / IDLE_PROCS))
    rm -f "$WORK"/ready-*
    sleep 1
    rss0=$(rss_kib "$pid")
    echo "## idle: $IDLE_N connections to $broker ($IDLE_PROCS processes), RSS before: $rss0 KiB" >&2
    for ((p = 0; p < IDLE_PROCS; p++)); do
        first=$((p * per))
        n=$((IDLE_N - first < per ? IDLE_N - first : per))
        ((n > 0)) || continue
        # shellcheck disable=SC2046
        timeout --signal=KILL $((IDLE_HOLD + 400)) "$SIM" load $(target_args "$broker") "${COMMON[@]}" \
            --scenario idle --clients "$n" --first-device "$first" --concurrency "$IDLE_C" \
            --duration "$IDLE_HOLD" --ready-file "$WORK/ready-$p" --max-seconds $((IDLE_HOLD + 300)) \
            >"$WORK/idle-$p.json" &
        sims+=($!)
        PIDS+=($!)
    done
    for _ in $(seq 1 3000); do
        ready=0
        for ((p = 0; p < ${#sims[@]}; p++)); do
            if [[ -s $WORK/ready-$p ]] || ! kill -0 "${sims[$p]}" 2>/dev/null; then
                ready=$((ready + 1))
            fi
        done
        ((ready < ${#sims[@]})) || break
        sleep 0.1
    done
    sleep 2 # let the broker settle
    rss1=$(rss_kib "$pid")
    for ((p = 0; p < ${#sims[@]}; p++)); do
        if [[ -s $WORK/ready-$p ]]; then
            read -r u f s <"$WORK/ready-$p"
            up=$((up + u))
            failed=$((failed + f))
            secs=$(awk -v a="$secs" -v b="$s" 'BEGIN { print (b > a ? b : a) }')
        fi
    done
    for p in "${sims[@]}"; do wait "$p" || echo "warning: an idle sim process failed" >&2; done
    PIDS=("$BULWARK_PID" "$MOSQ_PID")
    cat "$WORK"/idle-*.json >>"$RESULTS"
    awk -v b="$broker" -v n="$IDLE_N" -v up="$up" -v f="$failed" -v r0="$rss0" -v r1="$rss1" -v s="$secs" 'BEGIN {
        printf "{\"scenario\":\"idle-memory\",\"label\":\"%s\",\"connections\":%d,\"up\":%d,\"failed\":%d,", b, n, up, f
        printf "\"rss_before_kib\":%d,\"rss_after_kib\":%d,\"kib_per_connection\":%s,", r0, r1, (up > 0 ? sprintf("%.2f", (r1 - r0) / up) : "null")
        printf "\"connects_per_sec\":%s}\n", (s > 0 ? sprintf("%.1f", up / s) : "null")
    }' | tee -a "$RESULTS"
}

for b in "${ACTIVE[@]}"; do
    idle_run "$b"
done

# ---- message scenarios --------------------------------------------------------
for rep in $(seq 1 "$REPS"); do
    echo "## repetition $rep/$REPS" >&2
    for s in $SCENARIOS; do
        for b in "${ACTIVE[@]}"; do
            case $s in
                connect-rate) sim_load "$b" --scenario connect-rate --concurrency "$CONNECT_C" \
                    --clients "$CONNECT_DEVICES" --duration "$DURATION" ;;
                fan-in) sim_load "$b" --scenario fan-in --clients "$FANIN_N" --duration "$DURATION" ;;
                fan-out) sim_load "$b" --scenario fan-out --clients "$FANOUT_N" --duration "$DURATION" ;;
                latency) sim_load "$b" --scenario latency --clients "$LAT_N" --rate "$LAT_RATE" \
                    --duration "$DURATION" ;;
                *) echo "unknown scenario $s" >&2; exit 1 ;;
            esac
        done
    done
done

echo
echo "MQTT $MQTT, QoS $QOS, $PAYLOAD-byte payloads, ${DURATION} s per run, medians of $REPS;" \
    "connect-rate: $CONNECT_C workers; fan-in: $FANIN_N publishers (window $WINDOW);" \
    "fan-out: $FANOUT_N subscribers; latency: $LAT_N publishers at $LAT_RATE msg/s;" \
    "idle: $IDLE_N connections held ${IDLE_HOLD} s. $((SECONDS - BUILD_SECONDS)) s after the build." \
    "Raw results: ${RESULTS#"$PWD"/}"
echo
"$SIM" report --labels bulwark,mosquitto "$RESULTS"
# The detection pipeline keeps up if the gateway dropped no event for it.
if dropped=$(curl -sS --max-time 10 --cacert "$BULWARK_CACERT" -H "Authorization: Bearer $BULWARK_TOKEN" \
        "$BULWARK_ADDR/metrics" | awk '/^bulwark_mqtt_events_dropped_total /{print $2}'); then
    echo
    echo "Detection pipeline: ${dropped:-?} gateway events dropped (bulwark_mqtt_events_dropped_total) over all runs."
fi
