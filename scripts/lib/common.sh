# Shared by Lifeboat's scripts: paths, the Swift toolchain, apt helpers.
# shellcheck shell=bash

LIFEBOAT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export LIFEBOAT_ROOT
: "${LIFEBOAT_RUN_DIR:=/tmp/lifeboat-run}"
export LIFEBOAT_RUN_DIR

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian's glance/cinder packages install python3-swiftclient, whose /usr/bin/swift shadows
# the toolchain's driver on PATH: always use the `swift` that sits beside `swiftc`.
swift_driver() {
    local swiftc
    swiftc="$(command -v swiftc || true)"
    [ -n "$swiftc" ] || for candidate in /opt/swift/usr/bin/swiftc /usr/bin/swiftc; do
        [ -x "$candidate" ] && swiftc="$candidate" && break
    done
    [ -n "$swiftc" ] || die "the Swift toolchain (swiftc) is not installed"
    echo "$(dirname "$(readlink -f "$swiftc")")/swift"
}

# Installs Debian packages that are missing; one apt-get update per run, and waits for the lock.
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -z "${LIFEBOAT_APT_UPDATED:-}" ]; then
        $sudo apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null
        export LIFEBOAT_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

# What building Lifeboat needs: the C libraries it binds (with their headers).
BUILD_PACKAGES=(pkg-config librabbitmq-dev libssh2-1-dev libcurl4-openssl-dev libzstd-dev libxxhash-dev librbd-dev librados-dev libxml2)
# What its tests and demos start or talk to.
TEST_PACKAGES=(rabbitmq-server amqp-tools openssl python3 python3-pika python3-jsonschema python3-yaml qemu-utils
               openssh-server openssh-client libvirt-daemon-system libvirt-clients qemu-system-x86 iproute2)

# Installs what building and running need, builds the `lifeboat` command in release mode, and
# sets LIFEBOAT to its path. For the demo and the benchmarks that run real workers.
build_release_lifeboat() {
    apt_install "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    local swift
    swift="$(swift_driver)"
    mkdir -p "$LIFEBOAT_RUN_DIR"
    log "building lifeboat (release)"
    (cd "$LIFEBOAT_ROOT" && "$swift" build -c release --product lifeboat) >"$LIFEBOAT_RUN_DIR/build.log" 2>&1 ||
        { tail -30 "$LIFEBOAT_RUN_DIR/build.log"; die "build failed"; }
    LIFEBOAT="$(cd "$LIFEBOAT_ROOT" && "$swift" build -c release --show-bin-path)/lifeboat"
}
