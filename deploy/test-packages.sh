#!/usr/bin/env bash
# CI's check of the Debian packages (tests/run-all.sh runs it after cargo test; as root, on a
# machine where neither package is installed):
#   bash deploy/test-packages.sh
# builds both packages from the debug binaries already built (PACKAGE_PROFILE=dev
# deploy/package.sh), installs them with dpkg -i and checks that
#   - the files land where they should, the system users exist, the config is root:<user> 0640;
#   - --check-config fails on the untouched conffile, naming auth.secrets, and passes (run as the
#     service user) once the secrets are set;
#   - systemd-analyze verify accepts the installed units;
#   - man turn-server renders;
#   - the installed /usr/bin/turn-server, run by hand as its user with the installed config,
#     relays a turnutils_uclient run on loopback (no systemd runs in CI);
#   - dpkg -r keeps the config and the users, and dpkg -P leaves nothing behind.
# Each step is bounded by a timeout; a failure says which check and why. About a minute once
# cargo-deb is installed (its first install compiles it: ~2-3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(turn-server signaling)
WORK=$(mktemp -d /tmp/test-packages.XXXXXX)
RELAY_PID=""

fail() {
    echo "test-packages: FAILED: $*" >&2
    exit 1
}
step() { echo "--- $*"; }
# installed, config-files, not-installed, ... (empty when dpkg never heard of it).
pkg_status() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true; }

cleanup() {
    if [[ -n "$RELAY_PID" ]] && kill -0 "$RELAY_PID" 2>/dev/null; then
        kill "$RELAY_PID" 2>/dev/null || true
    fi
    # Leave the machine as it was, whatever failed.
    for pkg in "${PACKAGES[@]}"; do
        if [[ "$(pkg_status "$pkg")" != "" && "$(pkg_status "$pkg")" != not-installed ]]; then
            dpkg -P "$pkg" >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$WORK"
}

[[ $(id -u) -eq 0 ]] || fail "run as root: it installs and purges packages"
for pkg in "${PACKAGES[@]}"; do
    if [[ "$(pkg_status "$pkg")" != "" && "$(pkg_status "$pkg")" != not-installed ]]; then
        fail "$pkg is already installed here (dpkg -l $pkg): this check installs and purges it; remove it first"
    fi
    if getent passwd "$pkg" >/dev/null; then
        fail "a user '$pkg' exists but the package is not installed: this check would delete it on purge; use a machine without it"
    fi
done
trap cleanup EXIT

# The tools the checks use: man-db for man, systemd for systemd-analyze, coturn for uclient.
NEED=()
command -v man >/dev/null || NEED+=(man-db)
command -v systemd-analyze >/dev/null || NEED+=(systemd)
command -v turnutils_uclient >/dev/null || NEED+=(coturn)
if ((${#NEED[@]})); then
    step "installing ${NEED[*]}"
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends "${NEED[@]}" \
        >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; fail "apt-get install ${NEED[*]}"; }
fi

step "building the packages (PACKAGE_PROFILE=dev bash deploy/package.sh)"
rm -f target/debian/*.deb
PACKAGE_PROFILE=dev timeout 900 bash deploy/package.sh >"$WORK/package.log" 2>&1 ||
    { tail -40 "$WORK/package.log" >&2; fail "deploy/package.sh"; }
debs=()
for pkg in "${PACKAGES[@]}"; do
    deb=$(ls target/debian/"${pkg}"_*.deb 2>/dev/null) || fail "deploy/package.sh made no target/debian/${pkg}_*.deb"
    debs+=("$deb")
done

step "dpkg -i ${debs[*]}"
timeout 120 dpkg -i "${debs[@]}" >"$WORK/dpkg-i.log" 2>&1 || { cat "$WORK/dpkg-i.log" >&2; fail "dpkg -i"; }

step "installed files, users, config ownership"
for pkg in "${PACKAGES[@]}"; do
    dpkg -L "$pkg" >"$WORK/$pkg.files"
    for f in "/usr/bin/$pkg" "/usr/lib/systemd/system/$pkg.service" "/etc/$pkg/config.toml" \
        "/usr/lib/sysusers.d/$pkg.conf" "/usr/lib/tmpfiles.d/$pkg.conf" "/usr/share/man/man1/$pkg.1.gz" \
        "/usr/share/bash-completion/completions/$pkg" "/usr/share/zsh/vendor-completions/_$pkg" \
        "/usr/share/fish/vendor_completions.d/$pkg.fish" "/usr/share/doc/$pkg/examples/config.example.toml" \
        "/usr/share/doc/$pkg/examples/nginx/README.md" "/usr/share/doc/$pkg/copyright"; do
        [[ -f "$f" ]] || fail "$pkg: $f is not installed"
        grep -qxF "$f" "$WORK/$pkg.files" || fail "$pkg: $f exists but dpkg -L $pkg does not list it"
    done
    [[ -x "/usr/bin/$pkg" ]] || fail "/usr/bin/$pkg is not executable"
    bash -n "/usr/share/bash-completion/completions/$pkg" || fail "the bash completion of $pkg does not parse"
    grep -qxF "/etc/$pkg/config.toml" "/var/lib/dpkg/info/$pkg.conffiles" ||
        fail "$pkg: /etc/$pkg/config.toml is not a conffile"
    grep -q "^ExecStart=/usr/bin/$pkg " "/usr/lib/systemd/system/$pkg.service" ||
        fail "$pkg.service does not start /usr/bin/$pkg"
    getent passwd "$pkg" | grep -q ":/usr/sbin/nologin$" || fail "no system user $pkg with a nologin shell after install"
    getent group "$pkg" >/dev/null || fail "no group $pkg after install"
    [[ "$(stat -c '%U:%G %a' "/etc/$pkg/config.toml")" == "root:$pkg 640" ]] ||
        fail "/etc/$pkg/config.toml is $(stat -c '%U:%G %a' "/etc/$pkg/config.toml"), not root:$pkg 640"
    [[ "$(stat -c '%U:%G %a' "/etc/$pkg")" == "root:$pkg 750" ]] ||
        fail "/etc/$pkg is $(stat -c '%U:%G %a' "/etc/$pkg"), not root:$pkg 750"
    if [[ -e "/etc/systemd/system/multi-user.target.wants/$pkg.service" ]]; then
        fail "$pkg.service was enabled by the install"
    fi
done
[[ -f /usr/share/doc/turn-server/examples/nginx/turn-tls-443.conf ]] || fail "turn-server: no nginx example"
[[ -f /usr/share/doc/signaling/examples/nginx/signaling.conf ]] || fail "signaling: no nginx example"

# check_config PACKAGE: runs --check-config as the service user (so the config's mode is part of
# the check), output in $WORK/PACKAGE.check.
check_config() {
    timeout 20 runuser -u "$1" -- "/usr/bin/$1" --check-config --config "/etc/$1/config.toml" >"$WORK/$1.check" 2>&1
}

step "--check-config on the untouched conffiles fails, naming auth.secrets"
for pkg in "${PACKAGES[@]}"; do
    if check_config "$pkg"; then
        cat "$WORK/$pkg.check" >&2
        fail "$pkg --check-config accepted the untouched conffile, which has no secret"
    fi
    grep -q "auth.secrets: is empty.*set it to" "$WORK/$pkg.check" || {
        cat "$WORK/$pkg.check" >&2
        fail "$pkg --check-config failed without saying to set auth.secrets"
    }
done

step "--check-config passes once the secrets are set"
SECRET=$(head -c 36 /dev/urandom | base64)
JWT_SECRET=$(head -c 36 /dev/urandom | base64)
for pkg in "${PACKAGES[@]}"; do
    sed -i "s|^secrets = \[\]|secrets = [\"$SECRET\"]|" "/etc/$pkg/config.toml"
done
sed -i "s|^# jwt_secret = .*|jwt_secret = \"$JWT_SECRET\"|" /etc/signaling/config.toml
for pkg in "${PACKAGES[@]}"; do
    check_config "$pkg" || { cat "$WORK/$pkg.check" >&2; fail "$pkg --check-config refused the conffile with its secrets set"; }
done

step "systemd-analyze verify"
for pkg in "${PACKAGES[@]}"; do
    timeout 60 systemd-analyze verify "/usr/lib/systemd/system/$pkg.service" >"$WORK/$pkg.verify" 2>&1 || {
        cat "$WORK/$pkg.verify" >&2
        fail "systemd-analyze verify $pkg.service"
    }
    # verify exits 0 on some warnings; a line naming the unit file is one about it.
    if grep -q "$pkg.service" "$WORK/$pkg.verify"; then
        cat "$WORK/$pkg.verify" >&2
        fail "systemd-analyze verify complains about $pkg.service"
    fi
done

step "man pages render"
for pkg in "${PACKAGES[@]}"; do
    MANPAGER=cat MANWIDTH=100 timeout 30 man "$pkg" >"$WORK/$pkg.man" 2>&1 || {
        cat "$WORK/$pkg.man" >&2
        fail "man $pkg"
    }
    grep -q "^NAME" "$WORK/$pkg.man" && grep -q -- "--check-config" "$WORK/$pkg.man" ||
        { head -20 "$WORK/$pkg.man" >&2; fail "man $pkg has no NAME section or no --check-config option"; }
done

step "the installed relay relays a turnutils_uclient run"
free_port() { python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
runuser -u turn-server -- /usr/bin/turn-server --config /etc/turn-server/config.toml \
    --listening-ip 127.0.0.1 --relay-ip 127.0.0.1 --listening-port "$PORT" \
    --min-port 46000 --max-port 46999 --allow-loopback-peers >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
for _ in $(seq 50); do
    grep -q "listening" "$WORK/relay.log" && break
    kill -0 "$RELAY_PID" 2>/dev/null || { cat "$WORK/relay.log" >&2; fail "/usr/bin/turn-server exited at start"; }
    sleep 0.2
done
grep -q "listening" "$WORK/relay.log" || { cat "$WORK/relay.log" >&2; fail "/usr/bin/turn-server did not log 'listening' within 10 s"; }
# -y: two clients talk to each other through their relayed addresses, so no separate peer.
timeout 60 turnutils_uclient -y -c -W "$SECRET" -u pkg-test -m 2 -n 50 -l 120 -z 5 -p "$PORT" 127.0.0.1 \
    >"$WORK/uclient.log" 2>&1 || { tail -20 "$WORK/uclient.log" >&2; fail "turnutils_uclient exited non-zero"; }
received=$(grep -o "tot_recv_msgs=[0-9]*" "$WORK/uclient.log" | tail -1 | cut -d= -f2)
grep -q "Total lost packets 0 " "$WORK/uclient.log" && [[ "${received:-0}" -gt 0 ]] || {
    tail -20 "$WORK/uclient.log" >&2
    fail "turnutils_uclient through /usr/bin/turn-server: lost packets or nothing received"
}
echo "uclient: $received messages relayed, none lost"
kill "$RELAY_PID"
wait "$RELAY_PID" 2>/dev/null || true
RELAY_PID=""

step "dpkg -r keeps the config and the users"
timeout 120 dpkg -r "${PACKAGES[@]}" >"$WORK/dpkg-r.log" 2>&1 || { cat "$WORK/dpkg-r.log" >&2; fail "dpkg -r"; }
for pkg in "${PACKAGES[@]}"; do
    [[ ! -e "/usr/bin/$pkg" ]] || fail "/usr/bin/$pkg left after dpkg -r"
    [[ -f "/etc/$pkg/config.toml" ]] || fail "dpkg -r removed the conffile /etc/$pkg/config.toml"
    getent passwd "$pkg" >/dev/null || fail "dpkg -r removed the user $pkg"
done

step "dpkg -P leaves nothing behind"
timeout 120 dpkg -P "${PACKAGES[@]}" >"$WORK/dpkg-p.log" 2>&1 || { cat "$WORK/dpkg-p.log" >&2; fail "dpkg -P"; }
for pkg in "${PACKAGES[@]}"; do
    while read -r f; do
        # Directories other packages share (/usr/share/man/man1, ...) stay; files of ours must not.
        if [[ -e "$f" && ! -d "$f" ]] || [[ "$f" == "/etc/$pkg" && -e "$f" ]] || [[ "$f" == "/usr/share/doc/$pkg"* && -e "$f" ]]; then
            fail "$f left after dpkg -P $pkg"
        fi
    done <"$WORK/$pkg.files"
    ! getent passwd "$pkg" >/dev/null || fail "user $pkg left after dpkg -P"
    ! getent group "$pkg" >/dev/null || fail "group $pkg left after dpkg -P"
    [[ "$(pkg_status "$pkg")" == "" || "$(pkg_status "$pkg")" == not-installed ]] ||
        fail "dpkg still has $pkg as '$(pkg_status "$pkg")' after dpkg -P"
done
echo "test-packages: all checks passed"
