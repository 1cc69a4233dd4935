#!/usr/bin/env bash
# THE test command (README "Tests"; .ci/run runs exactly this):
#   bash tests/run-all.sh
# 1. installs the Debian packages the end-to-end tests use (coturn's turnutils_* tools, openssl,
#    redis-server, nginx, iproute2, node, python3, chromium) with apt-get when run as root; as another
#    user with something missing, prints the apt-get line and fails; then the pinned npm and
#    PyPI test clients of tests/clients/ (npm ci, python venvs); the web client library's
#    node unit tests and type check (clients/web/);
# 2. cargo fmt --check, clippy -D warnings, builds the binaries (then the web library's test
#    against the built signaling binary), cargo test --workspace;
# 3. builds the Debian packages from those debug binaries, installs, checks and purges them
#    (deploy/test-packages.sh), and a container image of the relay that must relay a probe
#    (deploy/container/build.sh --check); as root only;
# 4. a smoke run of the coturn comparison benchmark (bench/run.sh --smoke, ~2 minutes, on the
#    debug binaries built in step 2: it proves the harness works, its numbers mean nothing), then
#    a 1-minute smoke of the soak (bench/soak.sh --smoke, under 2 minutes: churn against
#    turn-server, coturn and the signaling service, and nothing left behind after it);
# 5. installs cargo-fuzz if needed and fuzzes every target briefly (FUZZ_SECONDS each, default
#    30; 0 skips this step).
# Runs from any directory. About 20 minutes from a clean clone on 2 cores, a third of it compiling.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
CARGO_FUZZ_VERSION=0.13.2
START=$SECONDS
SECTION_START=$SECONDS
SECTION=""
SUMMARY=()

end_section() {
    if [[ -n "$SECTION" ]]; then
        SUMMARY+=("$(printf '%5ds  %s' $((SECONDS - SECTION_START)) "$SECTION")")
        echo "--- done: $SECTION in $((SECONDS - SECTION_START))s"
    fi
}

section() {
    end_section
    SECTION=$1
    SECTION_START=$SECONDS
    echo
    echo "=== [$((SECONDS - START))s] $SECTION"
}

on_exit() {
    local rc=$?
    end_section
    SECTION=""
    echo
    echo "=== summary (total $((SECONDS - START))s)"
    printf '%s\n' "${SUMMARY[@]}"
    if [[ $rc -ne 0 ]]; then
        echo "=== FAILED (exit $rc) in: ${FAILED_SECTION:-?}"
    fi
    if [[ -n "${TESTS_PASSED:-}" ]]; then
        echo "tests: $TESTS_PASSED passed, $TESTS_FAILED failed"
    fi
}
trap 'FAILED_SECTION=$SECTION' ERR
trap on_exit EXIT

section "Debian packages"
# command -> Debian package: coturn's turnutils_* clients and turnserver; openssl for test
# certificates; redis-server and nginx for the signaling tests; iproute2 for the NAT tests'
# network namespaces; node/npm and python3 for the Socket.IO and aioice clients; c++ for
# libFuzzer; chromium for the browser call (tests/tests/e2e/browser_call.rs, driven by playwright-core,
# which never downloads a browser of its own); man-db and systemd (for `systemd-analyze verify`)
# for the .deb checks, buildah, podman and runc for the container image (deploy/); gnuplot and
# curl for the soak (bench/soak.sh); clang and libbpf-dev to build the kernel fast path's eBPF
# program (turn-server/build.rs), bpftool and ethtool for its tests (tests/tests/e2e/offload.rs).
NEEDS=(
    turnserver:coturn turnutils_uclient:coturn turnutils_peer:coturn turnutils_stunclient:coturn
    openssl:openssl redis-server:redis-server nginx:nginx ip:iproute2 timeout:coreutils
    turnadmin:coturn gnuplot:gnuplot-nox curl:curl
    node:nodejs npm:npm python3:python3 c++:g++ iptables:iptables
    chromium:chromium
    man:man-db systemd-analyze:systemd buildah:buildah podman:podman runc:runc
    clang:clang bpftool:bpftool ethtool:ethtool
)
missing=()
DEB_PACKAGES=()
for need in "${NEEDS[@]}"; do
    if ! command -v "${need%%:*}" >/dev/null 2>&1; then
        missing+=("${need%%:*}")
        [[ " ${DEB_PACKAGES[*]} " == *" ${need##*:} "* ]] || DEB_PACKAGES+=("${need##*:}")
    fi
done
if command -v python3 >/dev/null 2>&1 && ! python3 -m venv --help >/dev/null 2>&1; then
    missing+=("python3 -m venv")
    DEB_PACKAGES+=(python3-venv)
fi
# Debian's python3 runs `-m venv --help` without python3-venv, but cannot make a venv with pip.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=("python3 ensurepip")
    [[ " ${DEB_PACKAGES[*]} " == *" python3-venv "* ]] || DEB_PACKAGES+=(python3-venv)
fi
# nginx's stream module (TURN over TLS on 443 behind ssl_preread, tests/tests/e2e/turn_nginx.rs) is a
# separate package that nginx only recommends.
if [[ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]]; then
    missing+=(ngx_stream_module)
    DEB_PACKAGES+=(libnginx-mod-stream)
fi
# And the GeoIP2 module, for deploy/fleet/nginx.conf's region map (tests/tests/e2e/fleet_nginx_geoip.rs).
if [[ ! -f /usr/lib/nginx/modules/ngx_http_geoip2_module.so ]]; then
    missing+=(ngx_http_geoip2_module)
    DEB_PACKAGES+=(libnginx-mod-http-geoip2)
fi
# libbpf's headers for turn-server/src/offload/bpf/relay.bpf.c (without them build.rs leaves the
# offload out and its tests skip).
if [[ ! -f /usr/include/bpf/bpf_helpers.h ]]; then
    missing+=(bpf_helpers.h)
    DEB_PACKAGES+=(libbpf-dev)
fi
if ((${#missing[@]} == 0)); then
    echo "present: ${NEEDS[*]%%:*}"
elif [[ $(id -u) -eq 0 ]]; then
    echo "missing: ${missing[*]}; installing ${DEB_PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp)
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        "${DEB_PACKAGES[@]}"; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        exit 1
    fi
    rm -f "$apt_log"
    echo "installed: $(dpkg-query -W -f='${Package} ${Version}\n' "${DEB_PACKAGES[@]}" | xargs)"
else
    echo "missing: ${missing[*]}. Install them (as root), then rerun:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${DEB_PACKAGES[*]}" >&2
    exit 1
fi

section "test clients from npm and PyPI (tests/clients/)"
# Pinned by tests/clients/package-lock.json and requirements*.txt; reinstalled only when those
# change (a copy of the file inside the install marks what it was made from).
install_venv() { # VENV REQUIREMENTS
    if ! cmp -s "$2" "$1/requirements.installed" 2>/dev/null; then
        rm -rf "$1"
        python3 -m venv "$1"
        "$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
        cp "$2" "$1/requirements.installed"
    fi
    echo "$1: $("$1/bin/pip" freeze --disable-pip-version-check | xargs)"
}
if ! cmp -s tests/clients/package-lock.json tests/clients/node_modules/.package-lock.installed 2>/dev/null; then
    npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
    cp tests/clients/package-lock.json tests/clients/node_modules/.package-lock.installed
fi
echo "tests/clients/node_modules: $(ls tests/clients/node_modules | xargs)"
install_venv tests/clients/.venv tests/clients/requirements.txt
install_venv target/e2e-venv-turn tests/clients/requirements-turn.txt

section "web client library (clients/web/): npm ci, node unit tests, tsc type check"
# Pinned by its own package-lock.json, reinstalled only when that changes. The test against the
# real signaling binary waits for the cargo build below (a binary left from an older build
# would test old code), so it is skipped here and run there.
if ! cmp -s clients/web/package-lock.json clients/web/node_modules/.package-lock.installed 2>/dev/null; then
    npm ci --prefix clients/web --no-audit --no-fund --loglevel=error
    cp clients/web/package-lock.json clients/web/node_modules/.package-lock.installed
fi
SIGNALING_BIN=/nonexistent npm test --prefix clients/web --silent
npm run check --prefix clients/web --silent

section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build --workspace --bins (the e2e tests run target/debug/turn-server)"
cargo build --workspace --bins

section "web client library against the built signaling binary"
SIGNALING_BIN="$PWD/target/debug/signaling" node --test clients/web/test/live-signaling.test.js

section "cargo test --workspace --no-fail-fast"
TEST_LOG=target/run-all-cargo-test.log
mkdir -p target
# The e2e clients record here which messages of signaling/contract/ they saw (checked below).
rm -rf target/e2e-logs/contract
# Runs a test command with its output added to $TEST_LOG, keeps the suite's counts for the
# closing line (summed over every test binary so far), and stops on a failure.
run_tests() {
    set +e
    "$@" 2>&1 | tee -a "$TEST_LOG"
    local rc=${PIPESTATUS[0]}
    set -e
    read -r TESTS_PASSED TESTS_FAILED < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$TEST_LOG")
    if ((rc != 0)); then
        exit "$rc"
    fi
}
: >"$TEST_LOG"
run_tests cargo test --workspace --no-fail-fast

section "the browser, uclient and symmetric-NAT tests again with --offload off"
# The run above relayed channel data in the kernel wherever it could (`--offload auto`, root);
# these clients must work the same with every datagram in userspace.
run_tests env E2E_TURN_SERVER_ARGS="--offload off" cargo test -p e2e --test e2e --no-fail-fast -- \
    browser_ coturn_tools:: turn_nat_symmetric::

section "signaling contract: a valid AsyncAPI 3.0 document, every message seen by the e2e tests"
node tests/clients/contract.js lint
node tests/clients/contract.js coverage target/e2e-logs/contract

section "the .deb packages: bash deploy/test-packages.sh (dpkg -i, checks, a relayed run, purge)"
# Packages the debug binaries built above (no release build), installs them and checks what
# issue 18 promises (files, --check-config, systemd-analyze verify, man, a uclient run through
# /usr/bin/turn-server, nothing left after purge). Needs root (CI runs as root).
if [[ $(id -u) -eq 0 ]]; then
    bash deploy/test-packages.sh
else
    echo "skipped: not root (dpkg -i needs it)"
fi

section "container image: deploy/container/build.sh --check (buildah from scratch, podman --network host)"
# Seconds once buildah, podman and runc are installed: builds the image from the debug binary
# and relays one probe through it. Root only, like the packages.
if [[ $(id -u) -eq 0 ]]; then
    TURN_SERVER_BIN=target/debug/turn-server IMAGE=localhost/turn-server:ci bash deploy/container/build.sh --check
    podman rmi localhost/turn-server:ci >/dev/null
else
    echo "skipped: not root (buildah and podman run as root here)"
fi

section "bench smoke: bash bench/run.sh --smoke (debug build; checks the harness, not speed)"
bash bench/run.sh --smoke

section "soak smoke: bash bench/soak.sh --smoke (1 minute of churn on the debug build, then nothing left behind)"
bash bench/soak.sh --smoke

if [[ "$FUZZ_SECONDS" -gt 0 ]]; then
    section "cargo-fuzz $CARGO_FUZZ_VERSION"
    if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi
    cargo fuzz --version
    for target in stun_message server_datagram stream_framing signaling_event; do
        section "fuzz smoke: $target for ${FUZZ_SECONDS}s"
        bash fuzz/run.sh "$target" "$FUZZ_SECONDS"
    done
fi

section "all checks passed"
