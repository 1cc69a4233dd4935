#!/usr/bin/env bash
# Runs one fuzz target for a bounded time on the stable toolchain.
#   fuzz/run.sh TARGET [SECONDS]      TARGET: a directory of seeds/ (stun_message, server_datagram, stream_framing, signaling_event); SECONDS default 30
# Needs cargo-fuzz (cargo install cargo-fuzz --version 0.13.2 --locked). See fuzz/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
secs=${2:-30}
if [[ ! -d "seeds/$target" ]]; then
    echo "unknown fuzz target '$target'; targets: $(cd seeds && ls -d */ | tr -d / | xargs)" >&2
    exit 2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
    exit 1
fi

# corpus/ (grows, git-ignored) is where libFuzzer writes; seeds/ (committed) is read-only input.
mkdir -p "corpus/$target" "artifacts/$target"
# --sanitizer none: AddressSanitizer needs nightly; safe Rust gets bounds and overflow checks
# (cargo fuzz builds with debug assertions) and a panic is what we hunt.
# The outer timeout covers the build (first run: a few minutes) plus the fuzzing time.
exec timeout --kill-after=10 $((secs + 1200)) \
    cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
