#!/usr/bin/env bash
# Builds the Debian packages of turn-server and signaling into target/debian/:
#   bash deploy/package.sh                      # release build (what to ship)
#   PACKAGE_PROFILE=dev bash deploy/package.sh  # the debug binaries already built (CI's check,
#                                               # deploy/test-packages.sh): no second, release build
# Installs cargo-deb (pinned) if it is missing. What each package holds is the
# [package.metadata.deb] table of turn-server/Cargo.toml and signaling/Cargo.toml; this script
# makes the assets those tables name that are generated, under target/<profile>/assets/<package>/:
#   - man pages and bash/zsh/fish completions, written by deploy/pkg-assets (a workspace crate) from the binaries' clap
#     definitions;
#   - the conffile: deploy/<package>.example.toml with the secrets emptied (so --check-config
#     fails, saying what to set, until the operator sets them) and, for the relay, TLS and
#     external_ips left commented out (they need a certificate and the host's addresses);
#   - the systemd unit with the binary at /usr/bin (systemd/*.service name /usr/local/bin, where
#     the manual install of systemd/README.md puts it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DEB_VERSION=3.8.0
PROFILE=${PACKAGE_PROFILE:-release}
case "$PROFILE" in
    release) PROFILE_DIR=release ;;
    dev) PROFILE_DIR=debug ;;
    *) echo "package.sh: PACKAGE_PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
PACKAGES=(turn-server signaling)

if [[ "$(cargo deb --version 2>/dev/null || true)" != *" $CARGO_DEB_VERSION" ]]; then
    echo "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

# The binaries and the asset writer, in one cargo run. With dev this is the build
# `cargo build --workspace --bins` (tests/run-all.sh) already made, so it only checks freshness.
if [[ "$PROFILE" == dev ]]; then
    cargo build --workspace --bins
else
    cargo build --profile "$PROFILE" -p turn-server -p signaling -p pkg-assets --bins
fi

ASSETS=target/$PROFILE_DIR/assets
rm -rf "$ASSETS"
"target/$PROFILE_DIR/pkg-assets" assets "$ASSETS" >/dev/null
# Debian installs man pages gzipped (-n: no name or time stamp, so a rebuild is byte-identical).
gzip -9nf "$ASSETS"/*/man/*.1

# sed_checked IN OUT EXPR...: sed whose every expression must have matched a line of IN, so an
# edit of the example that this script no longer fits fails the build instead of shipping a
# conffile with the example's placeholder in it.
sed_checked() {
    local in=$1 out=$2 expr pattern
    shift 2
    for expr in "$@"; do
        pattern=${expr#s|}
        pattern=${pattern%%|*}
        if ! grep -qE "$pattern" "$in"; then
            echo "package.sh: no line of $in matches '$pattern': update the edit in deploy/package.sh" >&2
            exit 1
        fi
    done
    sed -E "${@/#/-e}" "$in" >"$out"
}

conffile_header() { # PACKAGE
    cat <<HEADER
# /etc/$1/config.toml, installed by the $1 package (a conffile: upgrades keep your edits).
# It is deploy/$1.example.toml with the secrets left for you: \`$1 --check-config --config
# /etc/$1/config.toml\` fails, naming the key, until they are set. Every key is documented in
# /usr/share/doc/$1/examples/config.example.toml. Then: systemctl enable --now $1
#
HEADER
}

for pkg in "${PACKAGES[@]}"; do
    mkdir -p "$ASSETS/$pkg"
    sed_checked "systemd/$pkg.service" "$ASSETS/$pkg/$pkg.service" 's|/usr/local/bin/|/usr/bin/|g'
done

conffile_header turn-server >"$ASSETS/turn-server/config.toml"
sed_checked deploy/turn-server.example.toml "$ASSETS/turn-server/body.toml" \
    's|^secrets = \[.*\]$|secrets = []|' \
    's|^(external_ips = .*)$|# \1|' \
    's|^(cert = .*)$|# \1|' \
    's|^(pkey = .*)$|# \1|' \
    's|^transports = \["udp", "tcp", "tls"\]$|transports = ["udp", "tcp"]  # add "tls" with cert and pkey|'
cat "$ASSETS/turn-server/body.toml" >>"$ASSETS/turn-server/config.toml"

conffile_header signaling >"$ASSETS/signaling/config.toml"
sed_checked deploy/signaling.example.toml "$ASSETS/signaling/body.toml" \
    's|^secrets = \[.*\]$|secrets = []|' \
    's|^jwt_secret = .*$|# jwt_secret = "<the messenger backend'"'"'s HS256 key, at least 16 bytes>"|'
cat "$ASSETS/signaling/body.toml" >>"$ASSETS/signaling/config.toml"
rm "$ASSETS"/*/body.toml

# cargo-deb warns that the dev profile is unsupported (it is meant for releases); the package is
# the same but for the binary's debug build, which is what the CI check wants to test.
FAST=()
[[ "$PROFILE" == dev ]] && FAST=(--fast)
for pkg in "${PACKAGES[@]}"; do
    cargo deb -p "$pkg" --profile "$PROFILE" --no-build "${FAST[@]}" --output target/debian/
done
ls -l target/debian/*.deb
