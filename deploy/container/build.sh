#!/usr/bin/env bash
# Builds a container image of the relay from scratch with buildah: the binary and the shared
# libraries ldd names, nothing else (no base image to pull, no shell, no package manager).
#   bash deploy/container/build.sh            # release build -> localhost/turn-server:latest
#   TURN_SERVER_BIN=target/debug/turn-server IMAGE=localhost/turn-server:dev bash deploy/container/build.sh
#   bash deploy/container/build.sh --check    # then run it and relay one probe (below)
# Run it with host networking, as coturn's maintainers advise for a relay (its port range would
# otherwise go through the container runtime's port forwarding), and the config mounted read-only:
#   podman run -d --name turn-server --network host \
#       -v /etc/turn-server:/etc/turn-server:ro localhost/turn-server:latest
# The image runs as nobody (65534): the config must be readable by it, and ports below 1024 need
# --cap-add NET_BIND_SERVICE. Needs buildah and podman (Debian packages), as root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

BIN=${TURN_SERVER_BIN:-target/release/turn-server}
IMAGE=${IMAGE:-localhost/turn-server:latest}
CHECK=false
[[ "${1:-}" == --check ]] && CHECK=true

if [[ -z "${TURN_SERVER_BIN:-}" ]]; then
    cargo build --release -p turn-server
fi
[[ -x "$BIN" ]] || { echo "build.sh: no binary at $BIN" >&2; exit 1; }

stage=$(mktemp -d)
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$stage"' EXIT
# Symbols only make the image bigger: the release profile keeps line tables for backtraces in the
# .deb's binary, not here.
strip -o "$stage/turn-server" "$BIN"
buildah copy --quiet "$ctr" "$stage/turn-server" /usr/bin/turn-server >/dev/null
# Each library under the path the binary asks for (ldd's left column resolved by the loader),
# copied from the file the host's symlinks lead to. The loader itself has no "=>".
ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' >"$stage/libs"
while read -r lib; do
    buildah copy --quiet "$ctr" "$(readlink -f "$lib")" "$lib" >/dev/null
done <"$stage/libs"
buildah config \
    --user 65534:65534 \
    --entrypoint '["/usr/bin/turn-server"]' \
    --cmd '["--config", "/etc/turn-server/config.toml"]' \
    --label org.opencontainers.image.title=turn-server \
    --label "org.opencontainers.image.description=STUN/TURN relay with TURN REST API credentials" \
    "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
# A rebuild under the same tag leaves the previous image untagged: drop those, ours only.
podman image prune -f --filter label=org.opencontainers.image.title=turn-server >/dev/null
trap 'rm -rf "$stage"' EXIT
echo "built $IMAGE: /usr/bin/turn-server and $(wc -l <"$stage/libs") libraries ($(xargs <"$stage/libs"))"
podman image ls "$IMAGE"

if $CHECK; then
    # podman's defaults ask for file and process limits above what a VM or a container may grant
    # (crun and runc then fail with "setrlimit RLIMIT_NOFILE / RLIMIT_NPROC: Operation not
    # permitted"): ask for the hard limit this shell has for files, and few processes (a relay
    # runs a thread per core and a small runtime). crun also refuses hybrid cgroups (v1 with a
    # v2 controller mounted), so use runc when it is installed.
    ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
    RUNTIME=()
    if command -v runc >/dev/null; then
        RUNTIME=(--runtime "$(command -v runc)")
    fi
    # The image relays: run it on loopback with host networking and a throwaway secret, and
    # probe it from the host with the same binary (allocate, relay a datagram to ourselves).
    port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    secret=$(head -c 24 /dev/urandom | base64)
    name=turn-server-check-$$
    podman "${RUNTIME[@]}" run -d --rm --name "$name" --network host "${ULIMITS[@]}" "$IMAGE" \
        --listening-ip 127.0.0.1 --listening-port "$port" --min-port 47000 --max-port 47099 \
        --realm check.example.org --use-auth-secret --static-auth-secret "$secret" \
        --allow-loopback-peers >/dev/null
    trap 'podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$stage"' EXIT
    for _ in $(seq 50); do
        podman logs "$name" 2>&1 | grep -q listening && break
        sleep 0.2
    done
    timeout 30 "$BIN" probe --url "turn:127.0.0.1:$port?transport=udp" --secret "$secret" || {
        podman logs "$name" >&2 || true
        echo "build.sh --check: FAILED: the container did not relay the probe (its log above)" >&2
        exit 1
    }
    echo "container check passed: $IMAGE relays on the host's network"
fi
