#!/usr/bin/env bash
# Runs Lifeboat's tests against real peers: installs what they need (Debian packages),
# starts the project's own RabbitMQ on loopback, an sshd on loopback, two hypervisors
# (libvirtd + QEMU + sshd, each in a network namespace), a single-node Ceph (mon, OSD, mgr) and
# a real OpenStack (Keystone, Glance, Placement, Nova with nova-compute in hypervisor 2, Cinder on
# the Ceph, Neutron's API), runs `swift test`, stops them all.
#
#   scripts/test.sh [extra swift test arguments, e.g. --filter AMQPTests]
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$LIFEBOAT_ROOT"

apt_install "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
SWIFT="$(swift_driver)"

log "building"
mkdir -p "$LIFEBOAT_RUN_DIR"
if ! { "$SWIFT" build && "$SWIFT" build --build-tests; } >"$LIFEBOAT_RUN_DIR/build.log" 2>&1; then
    grep -E "error:" "$LIFEBOAT_RUN_DIR/build.log" | head -40 >&2 || tail -40 "$LIFEBOAT_RUN_DIR/build.log" >&2
    die "build failed"
fi
# Strict concurrency and no warnings, in Lifeboat's own code (not its dependencies').
if grep -E "^$LIFEBOAT_ROOT/(Sources|Tests)/.*warning:" "$LIFEBOAT_RUN_DIR/build.log" | sort -u | tee /dev/stderr | grep -q .; then
    die "the build has warnings"
fi

/usr/bin/python3 scripts/lib/check_compose.py || die "compose/compose.yaml is out of date"

# An OpenStack left running by an earlier run lives on the broker and hypervisor 2: it goes first.
scripts/openstack.sh stop >/dev/null 2>&1 || true
# A broker with no data from earlier runs: queues are declared exactly as this checkout says.
scripts/broker.sh reset
stop_peers() {
    scripts/openstack.sh stop || true
    scripts/broker.sh stop
    scripts/sshd.sh stop || true
    scripts/hypervisor.sh stop all || true
    scripts/ceph.sh stop || true
}
trap stop_peers EXIT
eval "$(scripts/broker.sh env)"
scripts/sshd.sh start
eval "$(scripts/sshd.sh env)"
# Fresh hypervisors: no domains or disks left from earlier runs.
scripts/hypervisor.sh reset
scripts/hypervisor.sh start 1 2
eval "$(scripts/hypervisor.sh env)"
# A fresh Ceph: no images or snapshots left from earlier runs.
scripts/ceph.sh reset
eval "$(scripts/ceph.sh env)"
# A fresh cloud (no servers, volumes or images from earlier runs) on that broker, Ceph and host 2.
scripts/openstack.sh reset
scripts/openstack.sh start
eval "$(scripts/openstack.sh env)"
# A peer or tool the tests need that is missing is a failure here, not a skip.
export LIFEBOAT_STRICT_TESTS=1

log "testing"
# Every test is XCTest; Swift Testing would only add a closing "0 tests" line.
set +e
"$SWIFT" test --skip-build --disable-swift-testing "$@" 2>&1 | tee "$LIFEBOAT_RUN_DIR/test.log"
status=${PIPESTATUS[0]}
set -e
trap - EXIT
stop_peers
# The closing line, in the plain form any CI reads: "N passed, N failed".
if summary=$(grep -a -E "Executed [0-9]+ tests?, with [0-9]+ failures?" "$LIFEBOAT_RUN_DIR/test.log" | tail -n 1) && [ -n "$summary" ]; then
    total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
    failed=$(sed -E 's/.*with ([0-9]+) failures?.*/\1/' <<<"$summary")
    echo "$((total - failed)) passed, $failed failed"
else
    echo "0 passed, 0 failed"
    [ "$status" -ne 0 ] || status=1  # no test ran: that is a failure here
fi
exit "$status"
