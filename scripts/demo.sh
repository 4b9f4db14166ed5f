#!/usr/bin/env bash
# Lifeboat's main job on this machine, against real local services: installs what it needs,
# builds, starts a RabbitMQ of its own, two KVM hypervisors (libvirtd + QEMU + sshd, each in a
# network namespace: scripts/hypervisor.sh) and two workers sharing a repository. Then it backs
# up a running VM over SSH (a full, then an incremental after the guest writes), with progress,
# restores both points to files and checks them against the guest's disk as it was at each
# snapshot, and restores the newest point as a new VM on the other hypervisor and starts it.
# Everything it starts, it stops.
set -euo pipefail
export LIFEBOAT_RUN_DIR="${LIFEBOAT_RUN_DIR:-/tmp/lifeboat-demo}"
source "$(dirname "$0")/lib/common.sh"
cd "$LIFEBOAT_ROOT"
export LIFEBOAT_BROKER_PORT="${LIFEBOAT_BROKER_PORT:-5697}" LIFEBOAT_BROKER_TLS_PORT="${LIFEBOAT_BROKER_TLS_PORT:-5696}"
build_release_lifeboat

# Hypervisors 3 and 4 (10.200.0.4 and .5): the tests use 1 and 2, so both can run on one machine.
A=3 B=4
scripts/broker.sh reset
scripts/hypervisor.sh reset
WORKERS=()
cleanup() {
    for pid in "${WORKERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${WORKERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/hypervisor.sh stop all || true
    scripts/broker.sh stop
}
trap cleanup EXIT
log "two hypervisors: kvm-a (10.200.0.$((A + 1))) and kvm-b (10.200.0.$((B + 1)))"
scripts/hypervisor.sh start $A $B

export LIFEBOAT_AMQP_URL="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT/"
export LIFEBOAT_REPOSITORY="$LIFEBOAT_RUN_DIR/repository"
export LIFEBOAT_RESTORE_DIRECTORIES="$LIFEBOAT_RUN_DIR"
export LIFEBOAT_RANGE_MIB=64
# The hypervisors the workers may reach, with their SSH key and the known_hosts that pins them.
export LIFEBOAT_HYPERVISORS="$LIFEBOAT_RUN_DIR/hypervisors.json"
cat >"$LIFEBOAT_HYPERVISORS" <<EOF
{"hypervisors": [
  {"name": "kvm-a", "address": "10.200.0.$((A + 1))", "user": "root", "privateKeyFile": "$LIFEBOAT_RUN_DIR/ssh/id_ed25519",
   "knownHostsFile": "$LIFEBOAT_RUN_DIR/ssh/known_hosts"},
  {"name": "kvm-b", "address": "10.200.0.$((B + 1))", "user": "root", "privateKeyFile": "$LIFEBOAT_RUN_DIR/ssh/id_ed25519",
   "knownHostsFile": "$LIFEBOAT_RUN_DIR/ssh/known_hosts"}
]}
EOF

log "a running VM on kvm-a with a 1 GiB qcow2 disk (96 MiB random data, 64 MiB text, the rest never written)"
rm -rf "$LIFEBOAT_REPOSITORY" "$LIFEBOAT_RUN_DIR"/restore-*
DISK=$(scripts/hypervisor.sh vm $A demo-vm qcow2 1024 --no-start | tail -n 1)
SEED="$LIFEBOAT_RUN_DIR/seed.raw"
truncate -s 1G "$SEED"
head -c 96M /dev/urandom | dd of="$SEED" bs=1M seek=100 conv=notrunc status=none
# (yes stops with SIGPIPE when head has enough: expected, so not an error of the pipeline)
{ yes "Lifeboat demo: compressible guest data" || true; } | head -c 64M | dd of="$SEED" bs=1M seek=600 conv=notrunc status=none
qemu-img convert -n -f raw -O qcow2 "$SEED" "$DISK"
rm -f "$SEED"
scripts/hypervisor.sh virsh $A start demo-vm >/dev/null

# The guest's disk as it was at a backup's snapshot: after a backup the frozen file is the
# chain's base (the overlay the backup made sits above it), so its guest view is that point.
frozen_digest() {
    scripts/hypervisor.sh exec $A qemu-img convert -U -O raw /var/lib/libvirt/images/demo-vm-vda.qcow2 /var/lib/libvirt/images/view.raw
    sha256sum <"$(dirname "$DISK")/view.raw" | cut -d' ' -f1
    rm -f "$(dirname "$DISK")/view.raw"
}

"$LIFEBOAT" repo init --repo "$LIFEBOAT_REPOSITORY"
for n in 1 2; do
    "$LIFEBOAT" worker >"$LIFEBOAT_RUN_DIR/worker-$n.log" 2>&1 &
    WORKERS+=($!)
done
log "two workers running (logs: $LIFEBOAT_RUN_DIR/worker-*.log)"

log "1. full backup over SSH: a disk-only snapshot, then 64 MiB range tasks that both workers take"
"$LIFEBOAT" backup --project demo-project --instance demo-vm --mode incremental --request-id demo-full \
    --libvirt kvm-a/demo-vm --follow --timeout 300
sha_full=$(frozen_digest)

log "2. the guest writes 8 MiB (two patterns: they dedupe and compress to almost nothing); the incremental reads only the overlay's own clusters"
scripts/hypervisor.sh guest-write $A demo-vm 300M 4M 0x5a
scripts/hypervisor.sh guest-write $A demo-vm 900M 4M 0xa5
"$LIFEBOAT" backup --project demo-project --instance demo-vm --mode incremental --request-id demo-incr \
    --libvirt kvm-a/demo-vm --follow --timeout 300
sha_incr=$(frozen_digest)
"$LIFEBOAT" repo list --repo "$LIFEBOAT_REPOSITORY"
echo "kvm-a keeps one overlay for the next incremental: $(cd "$(dirname "$DISK")" && ls demo-vm-vda.qcow2.lifeboat-*)"

log "3. both points restored to files and compared with the guest's disk at each snapshot"
for point in full:"$sha_full" incr:"$sha_incr"; do
    name="${point%%:*}" want="${point#*:}"
    "$LIFEBOAT" restore --project demo-project --backup "demo-$name" --user demo-user --request-id "restore-$name" \
        --to-files "$LIFEBOAT_RUN_DIR/restore-$name" --follow --timeout 300
    got=$(sha256sum < "$LIFEBOAT_RUN_DIR/restore-$name/vda.img" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "the restore of demo-$name differs from the guest's disk at its snapshot"
    echo "demo-$name restored bit-identically ($(du -h "$LIFEBOAT_RUN_DIR/restore-$name/vda.img" | cut -f1) on disk of 1 GiB: sparse)"
done

log "4. the newest point as a new VM on kvm-b, defined and started"
"$LIFEBOAT" restore --project demo-project --backup demo-incr --user demo-user --request-id restore-vm \
    --to-libvirt kvm-b --name demo-vm-restored --start --follow --timeout 300
state=$(scripts/hypervisor.sh virsh $B domstate demo-vm-restored | tr -d '[:space:]')
[ "$state" = running ] || die "demo-vm-restored is $state on kvm-b, not running"
echo "demo-vm-restored is running on kvm-b"

log "5. a request with a typo, from a client nobody here wrote (amqp-publish): rejected with the reason, dead-lettered"
"$LIFEBOAT" watch --project _ --until rejected --timeout 30 &
WATCH=$!
sleep 1
echo '{"type":"backup.request","version":1,"requestId":"typo-1","project":"demo-project","instance":"demo-vm","mode":"fulll"}' |
    amqp-publish --url="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT" --exchange=lifeboat.requests \
        --routing-key=request.backup --content-type=application/json --persistent
wait "$WATCH" || true

"$LIFEBOAT" repo verify --repo "$LIFEBOAT_REPOSITORY"
log "done"
