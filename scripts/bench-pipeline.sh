#!/usr/bin/env bash
# Benchmark of the job pipeline, through a real RabbitMQ and two `lifeboat worker` processes:
#  1. tasks per second with an empty source: a 4 GiB all-hole image cut into 1 MiB range tasks,
#     so the figure is the pipeline's own cost per task (plan, publish, consume, stage, report);
#  2. a 4 GiB image (half holes, a quarter random, a quarter text) backed up in 256 MiB ranges,
#     next to `cat image > /dev/null` from the page cache in the same run.
# Last line: one JSON object with the figures and "ratios": {"vs_cat": X}.
set -euo pipefail
export LIFEBOAT_RUN_DIR="${LIFEBOAT_RUN_DIR:-/tmp/lifeboat-bench-pipeline}"
source "$(dirname "$0")/lib/common.sh"
cd "$LIFEBOAT_ROOT"
export LIFEBOAT_BROKER_PORT="${LIFEBOAT_BROKER_PORT:-5687}" LIFEBOAT_BROKER_TLS_PORT="${LIFEBOAT_BROKER_TLS_PORT:-5686}"
build_release_lifeboat

scripts/broker.sh reset >/dev/null
WORKERS=()
stop_workers() {
    for pid in "${WORKERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${WORKERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    WORKERS=()
}
cleanup() { stop_workers; scripts/broker.sh stop >/dev/null; rm -rf "$LIFEBOAT_RUN_DIR/repository" "$LIFEBOAT_RUN_DIR"/*.img; }
trap cleanup EXIT
export LIFEBOAT_AMQP_URL="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT/"
export LIFEBOAT_REPOSITORY="$LIFEBOAT_RUN_DIR/repository"
# Requests may only name images in, and restore into, the demo's own directory.
export LIFEBOAT_FILE_SOURCES="$LIFEBOAT_RUN_DIR" LIFEBOAT_RESTORE_DIRECTORIES="$LIFEBOAT_RUN_DIR" LIFEBOAT_LOG_LEVEL=warning

start_workers() {  # $1: MiB per range
    stop_workers
    for n in 1 2; do
        LIFEBOAT_RANGE_MIB="$1" "$LIFEBOAT" worker >>"$LIFEBOAT_RUN_DIR/worker-$n.log" 2>&1 &
        WORKERS+=($!)
    done
    sleep 1
}
now() { date +%s.%N; }
seconds() { python3 -c "print(round($2 - $1, 3))"; }

rm -rf "$LIFEBOAT_REPOSITORY"
"$LIFEBOAT" repo init --repo "$LIFEBOAT_REPOSITORY" >/dev/null

log "1. 4 GiB of holes in 1 MiB range tasks (4096 tasks)"
EMPTY="$LIFEBOAT_RUN_DIR/empty.img"
truncate -s 4G "$EMPTY"
start_workers 1
t0=$(now)
"$LIFEBOAT" backup --project bench --instance empty --mode full --request-id bench-empty --file "vda=$EMPTY:raw" \
    --follow --json --timeout 1800 >"$LIFEBOAT_RUN_DIR/empty.results"
t1=$(now)
empty_s=$(seconds "$t0" "$t1")
tasks_per_s=$(python3 -c "print(round(4096 / $empty_s, 1))")
echo "4096 tasks in $empty_s s: $tasks_per_s tasks/s"

log "2. a 4 GiB image (half holes, a quarter random, a quarter text) in 256 MiB ranges"
IMG="$LIFEBOAT_RUN_DIR/data.img"
truncate -s 4G "$IMG"
for i in 0 1 2 3; do
    head -c 256M /dev/urandom | dd of="$IMG" bs=1M seek=$((i * 1024)) conv=notrunc status=none
    { yes "$(date) guest log line $i with some variety $RANDOM" || true; } | head -c 256M |
        dd of="$IMG" bs=1M seek=$((i * 1024 + 256)) conv=notrunc status=none
done
cat "$IMG" >/dev/null  # both read from the page cache
t0=$(now); cat "$IMG" >/dev/null; t1=$(now)
cat_s=$(seconds "$t0" "$t1")
start_workers 256
t0=$(now)
"$LIFEBOAT" backup --project bench --instance data --mode full --request-id bench-data --file "vda=$IMG:raw" \
    --follow --json --timeout 1800 >"$LIFEBOAT_RUN_DIR/data.results"
t1=$(now)
backup_s=$(seconds "$t0" "$t1")
grep -q '"status":"succeeded"' "$LIFEBOAT_RUN_DIR/data.results" || die "the backup did not succeed"
python3 - "$empty_s" "$tasks_per_s" "$cat_s" "$backup_s" <<'PY'
import json, sys
empty_s, tasks_per_s, cat_s, backup_s = map(float, sys.argv[1:])
size = 4 << 30
print(f"cat: {cat_s:.2f} s ({size / cat_s / 1e6:.0f} MB/s); lifeboat backup: {backup_s:.2f} s ({size / backup_s / 1e6:.0f} MB/s)")
print(json.dumps({"benchmark": "pipeline", "workers": 2,
                  "empty_source": {"tasks": 4096, "seconds": empty_s, "tasks_per_s": tasks_per_s},
                  "backup_4gib": {"seconds": backup_s, "mb_per_s": round(size / backup_s / 1e6, 1), "range_mib": 256},
                  "cat": {"seconds": cat_s, "mb_per_s": round(size / cat_s / 1e6, 1)},
                  "ratios": {"vs_cat": round(cat_s / backup_s, 3)}}))
PY
