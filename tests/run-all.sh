#!/usr/bin/env bash
# THE test command (README "Tests"; .ci/run runs exactly this):
#   bash tests/run-all.sh
# 1. installs the Debian packages the end-to-end tests use (coturn's turnutils_* tools, openssl
#    for a test certificate), via
#    apt-get as root; not root and something missing: prints the apt-get line and fails;
# 2. cargo fmt --check, clippy -D warnings, builds the binaries, cargo test --workspace;
# 3. a short fuzz smoke of every fuzz target (FUZZ_SECONDS each, default 30; 0 skips it).
# Runs from any directory. About 10-15 minutes from a clean clone on 2 cores, most of it compiling.
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
}
trap 'FAILED_SECTION=$SECTION' ERR
trap on_exit EXIT

section "Debian packages (coturn's turnutils_* tools)"
DEB_PACKAGES=(coturn)
missing=()
for tool in turnserver turnutils_uclient turnutils_peer turnutils_stunclient; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v timeout >/dev/null 2>&1 || missing+=(timeout)
command -v openssl >/dev/null 2>&1 || { missing+=(openssl); DEB_PACKAGES+=(openssl); }
command -v c++ >/dev/null 2>&1 || { missing+=(c++); DEB_PACKAGES+=(g++); }
if ((${#missing[@]} == 0)); then
    echo "present: turnserver turnutils_uclient turnutils_peer turnutils_stunclient timeout openssl c++"
elif [[ $(id -u) -eq 0 ]]; then
    echo "missing: ${missing[*]}; installing ${DEB_PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${DEB_PACKAGES[@]}" coreutils >/dev/null
    echo "installed: $(dpkg-query -W -f='${Package} ${Version}\n' "${DEB_PACKAGES[@]}" | xargs)"
else
    echo "missing: ${missing[*]}. Install them (as root), then rerun:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${DEB_PACKAGES[*]} coreutils" >&2
    exit 1
fi

section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build --workspace --bins (the e2e tests run target/debug/turn-server)"
cargo build --workspace --bins

section "cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast

if [[ "$FUZZ_SECONDS" -gt 0 ]]; then
    section "cargo-fuzz $CARGO_FUZZ_VERSION"
    if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
        cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
    fi
    cargo fuzz --version
    for target in stun_message server_datagram stream_framing; do
        section "fuzz smoke: $target for ${FUZZ_SECONDS}s"
        bash fuzz/run.sh "$target" "$FUZZ_SECONDS"
    done
fi

section "all checks passed"
