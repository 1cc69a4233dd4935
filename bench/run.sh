#!/usr/bin/env bash
# Side-by-side benchmark of coturn's turnserver and turn-server (bench/README.md):
#   bash bench/run.sh            full run, release build, ~10 minutes on 2 cores
#   bash bench/run.sh --smoke    ~1 minute, debug build: proves the harness works (CI), numbers
#                                of a debug build say nothing about speed
# Both servers get the same flags where they share them (UDP only, REST secret, loopback peers,
# the same listening port and relay range), the same CPU pinning, and the same load from
# target/<profile>/turn-bench, one after the other, step by step. Prints one table with the
# ratio turn-server / coturn and keeps the raw records and logs in target/bench/<time>/.
# Environment (defaults in brackets):
#   BENCH_SECONDS       length of each load probe [2; smoke 1]
#   BENCH_REPEAT        runs of the relay step per server, alternating; the table keeps each
#                       server's best [2; smoke 1]
#   BENCH_CPU_ROUNDS    interleaved rounds of the CPU step, both servers up at once [8; smoke 2]
#   BENCH_PROFILE       release | debug [release; smoke debug]
#   BENCH_SERVER_CPUS   taskset CPU list for the server under test [1, or 0 on one core]
#   BENCH_GEN_CPUS      taskset CPU list for the generator and turnutils_* [0]
#   BENCH_PORT          listening port of both servers [34780]
#   BENCH_MIN_PORT/BENCH_MAX_PORT  relay port range [40000-60000]
#   BENCH_ALLOCS        allocation counts for the memory row [1000,10000; smoke 200]
#   BENCH_GSO           1: the generator sends each burst as one UDP GSO message [0]
# Everything listens on 127.0.0.1 only. Fails only when something is broken (a server does not
# start, allocations fail, nothing is relayed), never because a number is low.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SMOKE=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    *) echo "usage: bash bench/run.sh [--smoke]" >&2; exit 2 ;;
esac

if ((SMOKE)); then
    BENCH_SECONDS=${BENCH_SECONDS:-1}
    BENCH_REPEAT=${BENCH_REPEAT:-1}
    BENCH_PROFILE=${BENCH_PROFILE:-debug}
    BENCH_ALLOCS=${BENCH_ALLOCS:-200}
    RELAY_ARGS=(--payloads 120 --allocations 50 --bisect 1 --max-rate 40000 --start-rate 10000
        --latency-rate 2000)
    CPU_ARGS=(--rounds 2 --rate 5000 --seconds 1)
    ALL_CORES_ARGS=(--payloads 120 --allocations 50 --bisect 1 --max-rate 40000 --start-rate 10000)
    UCLIENT_ARGS=(--clients 10 --messages 100 --length 120 --interval-ms 5 --timeout-secs 30)
else
    BENCH_SECONDS=${BENCH_SECONDS:-2}
    BENCH_REPEAT=${BENCH_REPEAT:-2}
    BENCH_PROFILE=${BENCH_PROFILE:-release}
    BENCH_ALLOCS=${BENCH_ALLOCS:-1000,10000}
    RELAY_ARGS=(--payloads 120,1200 --allocations 50,500 --bisect 3 --latency-rate 5000)
    CPU_ARGS=(--rounds "${BENCH_CPU_ROUNDS:-8}" --rate 20000 --seconds 4)
    ALL_CORES_ARGS=(--payloads 120,1200 --allocations 500 --bisect 3)
    UCLIENT_ARGS=(--clients 50 --messages 1000 --length 120 --interval-ms 5 --timeout-secs 90)
fi
# One datagram per message unless BENCH_GSO=1 (bench/README.md, Limits).
if [[ ${BENCH_GSO:-0} == 1 ]]; then
    RELAY_ARGS+=(--gso)
    ALL_CORES_ARGS+=(--gso)
    CPU_ARGS+=(--gso)
fi
if (($(nproc) > 1)); then
    BENCH_SERVER_CPUS=${BENCH_SERVER_CPUS:-1}
else
    BENCH_SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
fi
BENCH_GEN_CPUS=${BENCH_GEN_CPUS:-0}
# The "all-cores" step: nothing pinned, each server with its default thread count.
ALL_CPUS=0-$(($(nproc) - 1))
BENCH_PORT=${BENCH_PORT:-34780}
BENCH_MIN_PORT=${BENCH_MIN_PORT:-40000}
BENCH_MAX_PORT=${BENCH_MAX_PORT:-60000}
PEER_PORT=$((BENCH_PORT + 10))
REALM=bench.test
SECRET="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
# Backstop on every child's life, should this script die without its EXIT trap.
CHILD_MAX_LIFE=1200

for tool in turnserver turnutils_uclient turnutils_peer taskset timeout; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y coturn util-linux coreutils)" >&2; exit 1; }
done

# Each allocation is a socket in the generator and one in the server: 10k of them need the limit raised.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
most=$(tr ',' '\n' <<<"$BENCH_ALLOCS" | sort -n | tail -1)
if (($(ulimit -n) < most + 1000)); then
    echo "bench: ulimit -n is $(ulimit -n) (hard limit): too low for $most allocations; set BENCH_ALLOCS lower" >&2
    exit 1
fi
if ((BENCH_MAX_PORT - BENCH_MIN_PORT + 1 < most + 100)); then
    echo "bench: relay range $BENCH_MIN_PORT-$BENCH_MAX_PORT cannot hold $most allocations" >&2
    exit 1
fi

if [[ $BENCH_PROFILE == release ]]; then
    cargo build --release -p turn-server -p turn-bench
else
    # The same package set as tests/run-all.sh's build step: building a subset resolves other
    # features, so `-p turn-server -p turn-bench` rebuilt every dependency (~5 minutes of CI).
    cargo build --workspace --bins
fi
BIN=target/$BENCH_PROFILE
GEN=(taskset -c "$BENCH_GEN_CPUS" "$BIN/turn-bench")
OUT=target/bench/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$SECONDS

# Servers running now (the CPU step runs two at once): their timeout wrappers and pids.
SERVER_WRAPPERS=()
SERVER_PIDS=()
SERVER_PID="" # the one started last
PEER_WRAPPER=""
RUN_SEQ=0

stop_servers() {
    local w p
    for p in "${SERVER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for w in "${SERVER_WRAPPERS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$w" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$w" 2>/dev/null || true
    done
    for p in "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for w in "${SERVER_WRAPPERS[@]}"; do wait "$w" 2>/dev/null || true; done
    SERVER_WRAPPERS=()
    SERVER_PIDS=()
    SERVER_PID=""
}

cleanup() {
    stop_servers
    if [[ -n $PEER_WRAPPER ]]; then
        kill "$PEER_WRAPPER" 2>/dev/null || true
        wait "$PEER_WRAPPER" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# The kernel keeps eBPF programs' run time only while asked to: the CPU step charges turn-server's
# fast path with it (bench/src/procfs.rs). Root only; put back as found.
BPF_STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo "")
if [[ $(id -u) -eq 0 && -n $BPF_STATS_BEFORE ]]; then
    sysctl -qw kernel.bpf_stats_enabled=1
    trap 'cleanup; sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_BEFORE"' EXIT
fi

# The same settings for both: UDP only on 127.0.0.1:PORT, relay range, REST secret, realm,
# loopback peers. turn-server's per-source limit on 401 answers (50/s by default) is lifted
# because every bench client shares 127.0.0.1; coturn has no such limit.
server_command() { # NAME PORT MIN_PORT MAX_PORT
    case $1 in
        coturn)
            echo turnserver -n --no-cli --no-tls --no-dtls --no-tcp --no-tcp-relay \
                -L 127.0.0.1 -E 127.0.0.1 -p "$2" --min-port "$3" --max-port "$4" \
                --use-auth-secret --static-auth-secret "$SECRET" -r "$REALM" --allow-loopback-peers \
                --log-file stdout --pidfile "$OUT/coturn.pid"
            ;;
        turn-server | turn-server-off)
            # turn-server as shipped (`--offload auto`: channel data in the kernel where it can
            # load, as root here), and with every datagram in userspace.
            echo "$BIN/turn-server" --no-tcp --no-tls \
                -L 127.0.0.1 -E 127.0.0.1 -p "$2" --min-port "$3" --max-port "$4" \
                --use-auth-secret --static-auth-secret "$SECRET" -r "$REALM" --allow-loopback-peers \
                --drain-timeout 0 --offload "$(if [[ $1 == turn-server-off ]]; then echo off; else echo auto; fi)"
            ;;
    esac
}

# Starts NAME beside any server already running; SERVER_PID is its pid.
start_another_server() { # NAME CPU_LIST PORT MIN_PORT MAX_PORT
    local name=$1 cpus=$2 port=$3
    if "${GEN[@]}" ready --server "127.0.0.1:$port" --timeout 0.3 2>/dev/null; then
        echo "bench: something already answers STUN on 127.0.0.1:$port; set BENCH_PORT" >&2
        exit 1
    fi
    RUN_SEQ=$((RUN_SEQ + 1))
    local log=$OUT/$name-$RUN_SEQ.log
    local cmd wrapper
    read -r -a cmd <<<"$(server_command "$name" "$port" "$4" "$5")"
    echo "${cmd[*]}" >"$log.cmd"
    taskset -c "$cpus" timeout "$CHILD_MAX_LIFE" "${cmd[@]}" >"$log" 2>&1 &
    wrapper=$!
    SERVER_WRAPPERS+=("$wrapper")
    SERVER_PID=""
    for _ in $(seq 50); do
        SERVER_PID=$(pgrep -P "$wrapper" | head -1 || true)
        [[ -n $SERVER_PID ]] && break
        sleep 0.1
    done
    [[ -n $SERVER_PID ]] && SERVER_PIDS+=("$SERVER_PID")
    if [[ -z $SERVER_PID ]] || ! "${GEN[@]}" ready --server "127.0.0.1:$port" --timeout 10; then
        echo "bench: $name did not start; last lines of $log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
}

# Stops every server, then starts NAME alone on the bench's port and relay range.
start_server() { # NAME [CPU LIST]
    stop_servers
    start_another_server "$1" "${2:-$BENCH_SERVER_CPUS}" "$BENCH_PORT" "$BENCH_MIN_PORT" "$BENCH_MAX_PORT"
}

COMMON=(--server "127.0.0.1:$BENCH_PORT" --secret "$SECRET" --out "$RESULTS")
SERVERS=(coturn turn-server turn-server-off)

section() { echo; echo "=== [$((SECONDS - STARTED))s] $*"; }

for server in "${SERVERS[@]}"; do
    section "$server: memory and allocation rate ($BENCH_ALLOCS allocations)"
    start_server "$server"
    "${GEN[@]}" memory --label "$server" --pid "$SERVER_PID" "${COMMON[@]}" --counts "$BENCH_ALLOCS"
    stop_servers
done

# Alternating servers per repeat keeps each pair close in time: a neighbour's compile then
# disturbs both rather than one.
for repeat in $(seq "$BENCH_REPEAT"); do
    for server in "${SERVERS[@]}"; do
        section "$server: saturation, latency (${BENCH_SECONDS}s probes, run $repeat of $BENCH_REPEAT)"
        start_server "$server"
        "${GEN[@]}" relay --label "$server" --pid "$SERVER_PID" "${COMMON[@]}" --seconds "$BENCH_SECONDS" "${RELAY_ARGS[@]}"
        stop_servers
    done
done

# CPU per relayed datagram: both servers up at once on the same core, each with half the relay
# range, and the generator measuring one then the other, round after round, so that whatever
# else the machine does falls on both alike (one run's figure moves by a quarter here).
# A third of the relay range each.
CPU_THIRD=$(((BENCH_MAX_PORT - BENCH_MIN_PORT) / 3))
section "CPU per relayed datagram: the servers at once, ${CPU_ARGS[*]}"
stop_servers
UNDER_TEST=()
for i in "${!SERVERS[@]}"; do
    lo=$((BENCH_MIN_PORT + i * CPU_THIRD))
    hi=$((lo + CPU_THIRD - 1))
    start_another_server "${SERVERS[$i]}" "$BENCH_SERVER_CPUS" "$((BENCH_PORT + 2 * i))" "$lo" "$hi"
    UNDER_TEST+=(--under-test "${SERVERS[$i]}:$SERVER_PID:127.0.0.1:$((BENCH_PORT + 2 * i))")
done
"${GEN[@]}" cpu "${UNDER_TEST[@]}" --secret "$SECRET" --out "$RESULTS" "${CPU_ARGS[@]}"
stop_servers

# Every core for server and generator alike: what the relay's workers per core (turn-server) and
# relay threads (coturn) give when the scheduler places them. On a machine this small the
# generator shares the cores, so the rows say "generator-bound" when it, not the server, runs out.
for server in "${SERVERS[@]}"; do
    section "$server: saturation on all cores ($ALL_CPUS, unpinned, its default threads)"
    start_server "$server" "$ALL_CPUS"
    taskset -c "$ALL_CPUS" "$BIN/turn-bench" relay --label "$server" --pid "$SERVER_PID" "${COMMON[@]}" \
        --seconds "$BENCH_SECONDS" --variant all-cores --saturation-only "${ALL_CORES_ARGS[@]}"
    stop_servers
    # The same with every client from one address (everyone behind one carrier-grade NAT address,
    # or one load tester): whether one host's flows still reach every worker or thread.
    section "$server: saturation on all cores, every client from one address"
    start_server "$server" "$ALL_CPUS"
    taskset -c "$ALL_CPUS" "$BIN/turn-bench" relay --label "$server" --pid "$SERVER_PID" "${COMMON[@]}" \
        --seconds "$BENCH_SECONDS" --variant one-address --sources 1 --saturation-only "${ALL_CORES_ARGS[@]}"
    stop_servers
done

taskset -c "$BENCH_GEN_CPUS" timeout "$CHILD_MAX_LIFE" turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >"$OUT/turnutils_peer.log" 2>&1 &
PEER_WRAPPER=$!
for server in "${SERVERS[@]}"; do
    section "$server: turnutils_uclient ${UCLIENT_ARGS[*]}"
    start_server "$server"
    "${GEN[@]}" uclient --label "$server" --pid "$SERVER_PID" "${COMMON[@]}" --peer-port "$PEER_PORT" "${UCLIENT_ARGS[@]}"
    stop_servers
done

section "results"
{
    echo "turn-bench $(if ((SMOKE)); then echo smoke; else echo full; fi) run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(uname -r)"
    echo "coturn: $(turnserver --version 2>/dev/null | head -1); turn-server: $BENCH_PROFILE build $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "servers pinned to CPU $BENCH_SERVER_CPUS, generator to CPU $BENCH_GEN_CPUS; probes ${BENCH_SECONDS}s, relay step best of $BENCH_REPEAT, CPU step ${CPU_ARGS[*]}; load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    "$BIN/turn-bench" table "$RESULTS" --servers "$(IFS=,; echo "${SERVERS[*]}")"
} | tee "$OUT/table.md"
echo
echo "records: $RESULTS; server logs: $OUT/ ($((SECONDS - STARTED))s)"
