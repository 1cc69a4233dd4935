#!/usr/bin/env bash
# Side-by-side benchmark of coturn's turnserver and turn-server (bench/README.md):
#   bash bench/run.sh            full run, release build, ~25 minutes on 2 cores
#   bash bench/run.sh --smoke    ~2.5 minutes, debug build: proves the harness works (CI), numbers
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
#   BENCH_NETNS         0: skip the netns step [1; it needs root and is skipped without]
#   BENCH_NETNS_SOURCES client addresses on the client namespace's veth [50]
# Everything listens on 127.0.0.1, except in the netns step: there the servers run in a network
# namespace of their own (tb-relay), reached over veth from the clients' (tb-client) and the
# peer's (tb-peer), on 198.18.0.0/15 test addresses; the namespaces go on exit, whatever the exit.
# Fails only when something is broken (a server does not start, allocations fail, nothing is
# relayed), never because a number is low.
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
    NETNS_RELAY_ARGS=(--payloads 120 --allocations 50 --bisect 1 --max-rate 20000 --start-rate 10000)
    UCLIENT_ARGS=(--clients 10 --messages 100 --length 120 --interval-ms 5 --timeout-secs 30)
else
    BENCH_SECONDS=${BENCH_SECONDS:-2}
    BENCH_REPEAT=${BENCH_REPEAT:-2}
    BENCH_PROFILE=${BENCH_PROFILE:-release}
    BENCH_ALLOCS=${BENCH_ALLOCS:-1000,10000}
    RELAY_ARGS=(--payloads 120,1200 --allocations 50,500 --bisect 3 --latency-rate 5000)
    CPU_ARGS=(--rounds "${BENCH_CPU_ROUNDS:-8}" --rate 20000 --seconds 4)
    ALL_CORES_ARGS=(--payloads 120,1200 --allocations 500 --bisect 3)
    NETNS_RELAY_ARGS=(--payloads 120,1200 --allocations 50 --bisect 3)
    UCLIENT_ARGS=(--clients 50 --messages 1000 --length 120 --interval-ms 5 --timeout-secs 90)
fi
# One datagram per message unless BENCH_GSO=1 (bench/README.md, Limits).
if [[ ${BENCH_GSO:-0} == 1 ]]; then
    RELAY_ARGS+=(--gso)
    ALL_CORES_ARGS+=(--gso)
    CPU_ARGS+=(--gso)
    NETNS_RELAY_ARGS+=(--gso)
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
# Where the servers listen (-L) and relay from (-E), and the command prefix that runs a server,
# or the generator talking to it, where the servers are: loopback of this namespace, until the
# netns step moves them into tb-relay.
SERVER_IP=127.0.0.1
RELAY_IP=127.0.0.1
IN_NS=()
# The netns step: client ── veth ── relay ── veth ── peer, a namespace each, forwarding off in
# the relay's. Addresses from 198.18.0.0/15 (benchmarking, RFC 2544), only ever inside them.
NS_CLIENT=tb-client
NS_RELAY=tb-relay
NS_PEER=tb-peer
NETNS_CLIENT_NET=198.18.1 # the servers listen on .1; the clients send from .2 on
NETNS_PEER_NET=198.18.2   # the servers relay from .1; the peer is .2
NETNS_SOURCES=${BENCH_NETNS_SOURCES:-50}
NETNS_MADE=()
NETNS_NOTE="netns step not run"
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
if ! [[ $NETNS_SOURCES =~ ^[0-9]+$ ]] || ((NETNS_SOURCES < 1 || NETNS_SOURCES > 250)); then
    echo "bench: BENCH_NETNS_SOURCES must be 1 to 250 (addresses $NETNS_CLIENT_NET.2 on), not $NETNS_SOURCES" >&2
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

# Deletes the namespaces this run made (their veths and addresses go with them); the servers in
# them are stopped first, since a namespace lives on while a process is in it.
netns_down() {
    local ns
    for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || echo "bench: could not delete network namespace $ns" >&2; done
    NETNS_MADE=()
}

# client ── veth ── relay ── veth ── peer. The generator's ends send full checksums (TX checksum
# offload off): veth hands on a CHECKSUM_PARTIAL skb as it is, and the fast path relays those
# only to local destinations, passing the rest to userspace (bench/README.md, "The netns step").
netns_up() {
    local ns i
    for ns in "$NS_CLIENT" "$NS_RELAY" "$NS_PEER"; do
        if ip netns list | grep -qw "^$ns"; then
            echo "bench: network namespace $ns exists already (another bench run, or one killed with -9): if nothing uses it, ip netns del $ns" >&2
            exit 1
        fi
    done
    for ns in "$NS_CLIENT" "$NS_RELAY" "$NS_PEER"; do
        ip netns add "$ns"
        NETNS_MADE+=("$ns")
        ip -n "$ns" link set lo up
    done
    # Both ends made inside the namespaces: nothing ever appears in this one.
    ip -n "$NS_RELAY" link add tbr-c type veth peer name tbc0 netns "$NS_CLIENT"
    ip -n "$NS_RELAY" link add tbr-p type veth peer name tbp0 netns "$NS_PEER"
    ip -n "$NS_RELAY" addr add "$NETNS_CLIENT_NET.1/24" dev tbr-c
    ip -n "$NS_RELAY" addr add "$NETNS_PEER_NET.1/24" dev tbr-p
    for i in $(seq 2 $((NETNS_SOURCES + 1))); do echo "addr add $NETNS_CLIENT_NET.$i/24 dev tbc0"; done |
        ip -n "$NS_CLIENT" -batch -
    ip -n "$NS_PEER" addr add "$NETNS_PEER_NET.2/24" dev tbp0
    ip -n "$NS_RELAY" link set tbr-c up
    ip -n "$NS_RELAY" link set tbr-p up
    ip -n "$NS_CLIENT" link set tbc0 up
    ip -n "$NS_PEER" link set tbp0 up
    ip -n "$NS_CLIENT" route add default via "$NETNS_CLIENT_NET.1"
    ip -n "$NS_PEER" route add default via "$NETNS_PEER_NET.1"
    # A relay is not a router: the fast path's egress hints, not the FIB, pick the device.
    ip netns exec "$NS_RELAY" sysctl -qw net.ipv4.ip_forward=0
    ip netns exec "$NS_CLIENT" ethtool -K tbc0 tx off >/dev/null
    ip netns exec "$NS_PEER" ethtool -K tbp0 tx off >/dev/null
}

cleanup() {
    stop_servers
    if [[ -n $PEER_WRAPPER ]]; then
        kill "$PEER_WRAPPER" 2>/dev/null || true
        wait "$PEER_WRAPPER" 2>/dev/null || true
    fi
    netns_down
}
trap cleanup EXIT
# A signal ends the run through the EXIT trap too, so the namespaces go whatever happens.
trap 'exit 130' INT
trap 'exit 143' TERM

# The kernel keeps eBPF programs' run time only while asked to: the CPU step charges turn-server's
# fast path with it (bench/src/procfs.rs). Root only; put back as found.
BPF_STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo "")
if [[ $(id -u) -eq 0 && -n $BPF_STATS_BEFORE ]]; then
    sysctl -qw kernel.bpf_stats_enabled=1
    trap 'cleanup; sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_BEFORE"' EXIT
fi

# The same settings for both: UDP only on SERVER_IP:PORT (relayed addresses on RELAY_IP), relay
# range, REST secret, realm, loopback peers. Every check of turn-server stays on, its per-source
# limit on 401 answers (50/s) included: the clients come from many addresses. In the netns step
# turn-server is told that the peer's test range may be relayed to (it refuses 198.18.0.0/15 by
# default; coturn does not).
server_command() { # NAME PORT MIN_PORT MAX_PORT [METRICS_PORT]
    case $1 in
        coturn)
            echo turnserver -n --no-cli --no-tls --no-dtls --no-tcp --no-tcp-relay \
                -L "$SERVER_IP" -E "$RELAY_IP" -p "$2" --min-port "$3" --max-port "$4" \
                --use-auth-secret --static-auth-secret "$SECRET" -r "$REALM" --allow-loopback-peers \
                --log-file stdout --pidfile "$OUT/coturn.pid"
            ;;
        turn-server | turn-server-off | turn-server-xdp)
            # turn-server as shipped (`--offload auto`: channel data in the kernel where it can
            # load, as root here: at TC), with every datagram in userspace, and at XDP. With a
            # metrics port (the CPU steps), its counters tell how much the kernel fast path relayed.
            echo "$BIN/turn-server" --no-tcp --no-tls \
                -L "$SERVER_IP" -E "$RELAY_IP" -p "$2" --min-port "$3" --max-port "$4" \
                --use-auth-secret --static-auth-secret "$SECRET" -r "$REALM" --allow-loopback-peers \
                --drain-timeout 0 --offload "$(case $1 in turn-server-off) echo off ;; turn-server-xdp) echo xdp ;; *) echo auto ;; esac)" \
                "$(if [[ $RELAY_IP != 127.0.0.1 ]]; then echo "--allowed-peer-ip $NETNS_PEER_NET.0/24"; fi)" \
                "$(if [[ -n ${5:-} ]]; then echo "--prometheus --prometheus-address 127.0.0.1 --prometheus-port $5"; fi)"
            ;;
    esac
}

# Starts NAME beside any server already running (in the namespace of IN_NS); SERVER_PID is its pid.
start_another_server() { # NAME CPU_LIST PORT MIN_PORT MAX_PORT [METRICS_PORT]
    local name=$1 cpus=$2 port=$3
    if "${IN_NS[@]}" "${GEN[@]}" ready --server "$SERVER_IP:$port" --timeout 0.3 2>/dev/null; then
        echo "bench: something already answers STUN on $SERVER_IP:$port; set BENCH_PORT" >&2
        exit 1
    fi
    RUN_SEQ=$((RUN_SEQ + 1))
    local log=$OUT/$name-$RUN_SEQ.log
    local cmd wrapper
    read -r -a cmd <<<"$(server_command "$name" "$port" "$4" "$5" "${6:-}")"
    echo "${IN_NS[*]} ${cmd[*]}" >"$log.cmd"
    # `ip netns exec` execs the server: the wrapper's child is the server itself.
    taskset -c "$cpus" timeout "$CHILD_MAX_LIFE" "${IN_NS[@]}" "${cmd[@]}" >"$log" 2>&1 &
    wrapper=$!
    SERVER_WRAPPERS+=("$wrapper")
    SERVER_PID=""
    for _ in $(seq 50); do
        SERVER_PID=$(pgrep -P "$wrapper" | head -1 || true)
        [[ -n $SERVER_PID ]] && break
        sleep 0.1
    done
    [[ -n $SERVER_PID ]] && SERVER_PIDS+=("$SERVER_PID")
    if [[ -z $SERVER_PID ]] || ! "${IN_NS[@]}" "${GEN[@]}" ready --server "$SERVER_IP:$port" --timeout 10; then
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

# CPU per relayed datagram: the servers up at once on the same core, each with a third of the
# relay range, and the generator measuring one then the other, round after round, so that
# whatever else the machine does falls on all alike (one run's figure moves by a quarter here).
# turn-server's metrics (port +20, +22, +24) say how much of it the kernel fast path relayed.
CPU_THIRD=$(((BENCH_MAX_PORT - BENCH_MIN_PORT) / 3))
cpu_step() { # [more turn-bench cpu arguments]
    local i lo hi port metrics_port under=() metrics=()
    stop_servers
    for i in "${!SERVERS[@]}"; do
        lo=$((BENCH_MIN_PORT + i * CPU_THIRD))
        hi=$((lo + CPU_THIRD - 1))
        port=$((BENCH_PORT + 2 * i))
        metrics_port=""
        if [[ ${SERVERS[$i]} != coturn ]]; then
            metrics_port=$((BENCH_PORT + 20 + 2 * i))
            metrics+=(--metrics "${SERVERS[$i]}=127.0.0.1:$metrics_port")
        fi
        start_another_server "${SERVERS[$i]}" "$BENCH_SERVER_CPUS" "$port" "$lo" "$hi" "$metrics_port"
        under+=(--under-test "${SERVERS[$i]}:$SERVER_PID:$SERVER_IP:$port")
    done
    "${IN_NS[@]}" "${GEN[@]}" cpu "${under[@]}" "${metrics[@]}" --secret "$SECRET" --out "$RESULTS" "${CPU_ARGS[@]}" "$@"
    stop_servers
}
section "CPU per relayed datagram: the servers at once, ${CPU_ARGS[*]}"
cpu_step

# The same over veth between network namespaces, so that datagrams cross devices and the fast
# path redirects from one device to another (bpf_redirect_neigh) instead of delivering locally.
# The servers run in tb-relay (forwarding off), the generator's client sockets in tb-client and
# its peer socket in tb-peer; the generator itself runs in tb-relay, beside the servers' /proc.
if [[ ${BENCH_NETNS:-1} == 0 ]]; then
    echo "bench: netns step skipped (BENCH_NETNS=0)"
elif [[ $(id -u) -ne 0 ]]; then
    echo "bench: netns step skipped: it needs root (network namespaces, veth, setns)"
elif ! command -v ip >/dev/null || ! command -v ethtool >/dev/null; then
    echo "bench: netns step skipped: it needs ip (iproute2) and ethtool"
else
    NETNS_NOTE="netns rows: clients ($NETNS_CLIENT_NET.2-$NETNS_CLIENT_NET.$((NETNS_SOURCES + 1)), ns $NS_CLIENT) -- veth -- servers ($NETNS_CLIENT_NET.1, relayed from $NETNS_PEER_NET.1, ns $NS_RELAY, ip_forward 0) -- veth -- peer ($NETNS_PEER_NET.2, ns $NS_PEER); TX checksum offload off on the generator's veth ends"
    section "netns: client -- veth -- relay (tb-relay, forwarding off) -- veth -- peer, $NETNS_SOURCES client addresses"
    netns_up
    SERVER_IP=$NETNS_CLIENT_NET.1
    RELAY_IP=$NETNS_PEER_NET.1
    IN_NS=(ip netns exec "$NS_RELAY")
    NETNS_GEN_ARGS=(--client-netns "$NS_CLIENT" --peer-netns "$NS_PEER" --client-ip "$NETNS_CLIENT_NET.2"
        --sources "$NETNS_SOURCES" --peer-ip "$NETNS_PEER_NET.2")
    section "netns: CPU per relayed datagram over veth: the servers at once, ${CPU_ARGS[*]}"
    cpu_step --variant netns "${NETNS_GEN_ARGS[@]}"
    for server in "${SERVERS[@]}"; do
        section "$server: saturation over veth (netns), ${NETNS_RELAY_ARGS[*]}"
        start_server "$server"
        "${IN_NS[@]}" "${GEN[@]}" relay --label "$server" --pid "$SERVER_PID" --server "$SERVER_IP:$BENCH_PORT" \
            --secret "$SECRET" --out "$RESULTS" --seconds "$BENCH_SECONDS" --variant netns --saturation-only \
            "${NETNS_RELAY_ARGS[@]}" "${NETNS_GEN_ARGS[@]}"
        stop_servers
    done
    # XDP (`--offload xdp`) beside coturn over the same veths, in a step of its own: the program
    # runs natively on the relay's veths, which then receive through NAPI, for every server there
    # (and on lo, in generic mode, it would copy every server's datagrams). A native redirect into
    # a veth needs NAPI at its other end too: GRO on the generator's ends. coturn's figure here is
    # its process's CPU as everywhere; the program's run time, on every server's datagrams, is
    # charged to turn-server-xdp.
    ip netns exec "$NS_CLIENT" ethtool -K tbc0 gro on >/dev/null
    ip netns exec "$NS_PEER" ethtool -K tbp0 gro on >/dev/null
    ALL_SERVERS=("${SERVERS[@]}")
    SERVERS=(coturn turn-server-xdp)
    section "netns: CPU per relayed datagram over veth, XDP: ${SERVERS[*]} at once, ${CPU_ARGS[*]}"
    cpu_step --variant netns-xdp "${NETNS_GEN_ARGS[@]}"
    SERVERS=("${ALL_SERVERS[@]}")
    SERVER_IP=127.0.0.1
    RELAY_IP=127.0.0.1
    IN_NS=()
    netns_down
fi

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
    echo "$NETNS_NOTE"
    echo
    "$BIN/turn-bench" table "$RESULTS" --servers "$(IFS=,; echo "${SERVERS[*]}"),turn-server-xdp"
} | tee "$OUT/table.md"
echo
echo "records: $RESULTS; server logs: $OUT/ ($((SECONDS - STARTED))s)"
