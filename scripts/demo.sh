#!/usr/bin/env bash
# Lifeboat's main job on this machine, against real local services: installs what it needs,
# builds, starts a RabbitMQ of its own and two workers sharing a repository, then backs up a
# 1 GiB disk image through the broker (a full, then an incremental after the "guest" writes),
# restores both points and checks them byte for byte — with progress on the results exchange.
# Everything it starts, it stops.
#
# Today's source is a raw image file on the workers' host; the libvirt, Ceph and
# disk-attachment strategies plug into the same pipeline (see the README's status).
set -euo pipefail
export LIFEBOAT_RUN_DIR="${LIFEBOAT_RUN_DIR:-/tmp/lifeboat-demo}"
source "$(dirname "$0")/lib/common.sh"
cd "$LIFEBOAT_ROOT"
export LIFEBOAT_BROKER_PORT="${LIFEBOAT_BROKER_PORT:-5697}" LIFEBOAT_BROKER_TLS_PORT="${LIFEBOAT_BROKER_TLS_PORT:-5696}"
build_release_lifeboat

scripts/broker.sh reset
WORKERS=()
cleanup() {
    for pid in "${WORKERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${WORKERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/broker.sh stop
}
trap cleanup EXIT
export LIFEBOAT_AMQP_URL="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT/"
export LIFEBOAT_REPOSITORY="$LIFEBOAT_RUN_DIR/repository"
# Requests may only name images in, and restore into, the demo's own directory.
export LIFEBOAT_FILE_SOURCES="$LIFEBOAT_RUN_DIR" LIFEBOAT_RESTORE_DIRECTORIES="$LIFEBOAT_RUN_DIR"
export LIFEBOAT_RANGE_MIB=64

IMG="$LIFEBOAT_RUN_DIR/demo.img"
log "a 1 GiB sparse disk image to protect: $IMG"
rm -rf "$LIFEBOAT_REPOSITORY" "$IMG" "$LIFEBOAT_RUN_DIR"/restore-*
truncate -s 1G "$IMG"
head -c 96M /dev/urandom | dd of="$IMG" bs=1M seek=100 conv=notrunc status=none
# (yes stops with SIGPIPE when head has enough: expected, so not an error of the pipeline)
{ yes "Lifeboat demo: compressible guest data" || true; } | head -c 64M | dd of="$IMG" bs=1M seek=600 conv=notrunc status=none
sha_full=$(sha256sum < "$IMG" | cut -d' ' -f1)

"$LIFEBOAT" repo init --repo "$LIFEBOAT_REPOSITORY"
for n in 1 2; do
    "$LIFEBOAT" worker >"$LIFEBOAT_RUN_DIR/worker-$n.log" 2>&1 &
    WORKERS+=($!)
done
log "two workers running (logs: $LIFEBOAT_RUN_DIR/worker-*.log)"

log "1. full backup, split into 64 MiB range tasks that both workers take"
"$LIFEBOAT" backup --project demo-project --instance demo-vm --mode incremental --request-id demo-full \
    --file "vda=$IMG:raw" --follow --timeout 300

log "2. the guest writes 8 MiB; an incremental stores only the changed chunks"
head -c 8M /dev/urandom | dd of="$IMG" bs=64K seek=3000 conv=notrunc status=none
sha_incr=$(sha256sum < "$IMG" | cut -d' ' -f1)
"$LIFEBOAT" backup --project demo-project --instance demo-vm --mode incremental --request-id demo-incr \
    --file "vda=$IMG:raw" --follow --timeout 300
"$LIFEBOAT" repo list --repo "$LIFEBOAT_REPOSITORY"

log "3. both points restored to files and compared with the image as it was"
for point in full:"$sha_full" incr:"$sha_incr"; do
    name="${point%%:*}" want="${point#*:}"
    "$LIFEBOAT" restore --project demo-project --backup "demo-$name" --user demo-user --request-id "restore-$name" \
        --to-files "$LIFEBOAT_RUN_DIR/restore-$name" --follow --timeout 300
    got=$(sha256sum < "$LIFEBOAT_RUN_DIR/restore-$name/vda.img" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "the restore of demo-$name differs from the image at its backup"
    echo "demo-$name restored bit-identically ($(du -h "$LIFEBOAT_RUN_DIR/restore-$name/vda.img" | cut -f1) on disk of 1 GiB: sparse)"
done

log "4. a request with a typo, from a client nobody here wrote (amqp-publish): rejected with the reason, dead-lettered"
"$LIFEBOAT" watch --project _ --until rejected --timeout 30 &
WATCH=$!
sleep 1
echo '{"type":"backup.request","version":1,"requestId":"typo-1","project":"demo-project","instance":"demo-vm","mode":"fulll"}' |
    amqp-publish --url="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT" --exchange=lifeboat.requests \
        --routing-key=request.backup --content-type=application/json --persistent
wait "$WATCH" || true

"$LIFEBOAT" repo verify --repo "$LIFEBOAT_REPOSITORY"
log "done"
