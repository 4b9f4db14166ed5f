#!/usr/bin/env bash
# Benchmark of the Ceph strategy against a real single-node Ceph (scripts/ceph.sh: one mon,
# one bluestore OSD on a sparse file, a mgr), a real RabbitMQ and one `lifeboat worker`:
#  1. a 4 GiB RBD image holding 2 GiB of random data (64 MiB runs between 64 MiB holes);
#     `rbd export` of a snapshot to /dev/null (the limit: it neither hashes nor compresses),
#     Benji 0.17's full backup of the same snapshot, and Lifeboat's full backup (its own
#     snapshot, aio reads of the allocated extents, zstd, into a fresh repository);
#  2. 1 % of the image rewritten (10 runs of 4 MiB at unaligned offsets); Benji's differential
#     backup (rbd diff hints) and Lifeboat's incremental;
#  3. restore of the incremental into a new image next to `rbd import` of the same 4 GiB raw file;
#  4. a 1 TiB image with 64 MiB written: a full, then an incremental with nothing changed;
#  5. the worker's peak RSS.
# Beside them, the floor of the disk the OSD and the repository share: the seconds `dd` takes
# to read 2 GiB and write 2 GiB at once with direct 4 MiB I/O, the traffic a full makes.
# For the export, the full, the import and the restore it also records the CPU seconds of the
# client, the OSD and the worker, and what the shared disk read and wrote.
# Last line: one JSON object with the figures and
# "ratios": {"vs_rbd_export": X, "vs_benji": Y, "restore_vs_rbd_import": Z}.
set -euo pipefail
export LIFEBOAT_RUN_DIR="${LIFEBOAT_RUN_DIR:-/tmp/lifeboat-bench-ceph}"
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/benji.sh"
cd "$LIFEBOAT_ROOT"
export LIFEBOAT_BROKER_PORT="${LIFEBOAT_BROKER_PORT:-5683}" LIFEBOAT_BROKER_TLS_PORT="${LIFEBOAT_BROKER_TLS_PORT:-5682}"
export LIFEBOAT_CEPH_PORT="${LIFEBOAT_CEPH_PORT:-3460}"
build_release_lifeboat
benji_install

scripts/broker.sh reset >/dev/null
scripts/ceph.sh reset >/dev/null
WORKER=""
cleanup() {
    [ -z "$WORKER" ] || { kill -TERM "$WORKER" 2>/dev/null || true; wait "$WORKER" 2>/dev/null || true; }
    scripts/ceph.sh stop >/dev/null || true
    scripts/broker.sh stop >/dev/null
    rm -rf "$LIFEBOAT_RUN_DIR/repository" "$LIFEBOAT_RUN_DIR/benji" "$LIFEBOAT_RUN_DIR/import.raw" "$LIFEBOAT_RUN_DIR/ceph" \
        "$LIFEBOAT_RUN_DIR"/floor-*.bin
}
trap cleanup EXIT
eval "$(scripts/ceph.sh env)"
CONF=$LIFEBOAT_TEST_CEPH_CONF ADMIN=$LIFEBOAT_TEST_CEPH_ADMIN_KEYRING
RBD=(rbd -c "$CONF" --id admin --keyring "$ADMIN")
edit() { /usr/bin/python3 scripts/lib/rbd-edit.py "$CONF" admin "$ADMIN" volumes "$@"; }

export LIFEBOAT_AMQP_URL="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT/"
export LIFEBOAT_REPOSITORY="$LIFEBOAT_RUN_DIR/repository" LIFEBOAT_LOG_LEVEL="${BENCH_LOG_LEVEL:-warning}"
TRANSFERS="${BENCH_TRANSFERS:-2}" RANGE_MIB="${BENCH_RANGE_MIB:-512}"
export LIFEBOAT_RANGE_MIB=$RANGE_MIB LIFEBOAT_TASK_CONCURRENCY=$TRANSFERS LIFEBOAT_SOURCE_CONCURRENCY=$TRANSFERS
export LIFEBOAT_CEPH_CLUSTERS="$LIFEBOAT_RUN_DIR/ceph-clusters.json"
cat >"$LIFEBOAT_CEPH_CLUSTERS" <<EOF
{"clusters": [{"name": "bench", "conf": "$CONF", "user": "lifeboat", "keyring": "$LIFEBOAT_TEST_CEPH_KEYRING"}]}
EOF

now() { date +%s.%N; }
seconds() { python3 -c "print(round($2 - $1, 3))"; }
# What a step cost besides time, so the JSON line shows where the seconds went: CPU seconds of
# the client (this shell's waited-for children: `rbd`, Benji, the `lifeboat` CLI), of the OSD
# and of the worker, and MiB read from and written to the disk the OSD and the repository share.
OSD_PID=$(cat "$LIFEBOAT_RUN_DIR/ceph/run/osd.0.pid")
DISK=$(df --output=source "$LIFEBOAT_RUN_DIR" | tail -n 1 | sed 's|^/dev/||')
cpu_of() { [ -n "$1" ] && awk '{ print ($14 + $15 + $16 + $17) / 100 }' "/proc/$1/stat" || echo 0; }
usage() { echo "$(cpu_of $$) $(cpu_of "$OSD_PID") $(cpu_of "$WORKER") $(awk -v d="$DISK" '$3 == d { print $6, $10; found = 1 } END { if (!found) print 0, 0 }' /proc/diskstats)"; }
cost() {  # cost BEFORE AFTER: the difference of two `usage` lines as JSON
    python3 -c 'import json, sys
a, b = (list(map(float, x.split())) for x in sys.argv[1:3])
d = [y - x for x, y in zip(a, b)]
print(json.dumps({"client_cpu_s": round(d[0], 2), "osd_cpu_s": round(d[1], 2), "worker_cpu_s": round(d[2], 2),
                  "disk_read_mib": int(d[3] / 2048), "disk_written_mib": int(d[4] / 2048)}))' "$1" "$2"
}

log "a 4 GiB image: 2 GiB of random data in 64 MiB runs, 2 GiB of holes"
ops=(create:4G)
for i in $(seq 0 31); do ops+=("random:$((i * 128))M:64M:$i"); done
edit bench "${ops[@]}" snap:s0

log "1. full: rbd export to /dev/null, Benji 0.17, Lifeboat"
"${RBD[@]}" export --no-progress volumes/bench@s0 - >/dev/null  # the OSD's caches warmed for everyone
u0=$(usage); t0=$(now); "${RBD[@]}" export --no-progress volumes/bench@s0 - >/dev/null; t1=$(now); u1=$(usage)
export_s=$(seconds "$t0" "$t1") export_cost=$(cost "$u0" "$u1")
benji_configure "$LIFEBOAT_RUN_DIR/benji" "$CONF" lifeboat "$LIFEBOAT_TEST_CEPH_KEYRING" >/dev/null
sync
t0=$(now); benji_backup_full volumes bench s0 bench >/dev/null; t1=$(now)
benji_full_s=$(seconds "$t0" "$t1")
echo "rbd export: $export_s s, Benji full: $benji_full_s s"

# The disk's floor for a full's traffic: 2 GiB read while 2 GiB are written, direct I/O.
dd if=/dev/zero of="$LIFEBOAT_RUN_DIR/floor-read.bin" bs=4M count=512 oflag=direct status=none
sync
t0=$(now)
dd if="$LIFEBOAT_RUN_DIR/floor-read.bin" of=/dev/null bs=4M iflag=direct status=none &
dd if=/dev/zero of="$LIFEBOAT_RUN_DIR/floor-write.bin" bs=4M count=512 oflag=direct status=none
wait $!
t1=$(now)
floor_s=$(seconds "$t0" "$t1")
rm -f "$LIFEBOAT_RUN_DIR"/floor-*.bin
sync
echo "the disk reading 2 GiB while writing 2 GiB: $floor_s s"

rm -rf "$LIFEBOAT_REPOSITORY"
"$LIFEBOAT" repo init --repo "$LIFEBOAT_REPOSITORY" >/dev/null
"$LIFEBOAT" worker >>"$LIFEBOAT_RUN_DIR/worker.log" 2>&1 &
WORKER=$!
sleep 1
# timed_backup ID MODE IMAGE: runs the backup to its end, prints its seconds.
timed_backup() {
    local t0 t1
    sync
    t0=$(now)
    "$LIFEBOAT" backup --project bench --instance "$3" --mode "$2" --request-id "$1" --rbd "vda=bench:volumes/$3" \
        --follow --json --timeout 3600 >"$LIFEBOAT_RUN_DIR/$1.results"
    t1=$(now)
    grep -q '"status":"succeeded"' "$LIFEBOAT_RUN_DIR/$1.results" || die "backup $1 did not succeed: $(tail -n 2 "$LIFEBOAT_RUN_DIR/$1.results")"
    seconds "$t0" "$t1"
}
# BENCH_PERF=full|restore: a CPU profile of the worker during that step, in $LIFEBOAT_RUN_DIR/perf.data.
PERF=""
profile() { [ "${BENCH_PERF:-}" != "$1" ] || { perf record -F 499 -g -p "$WORKER" -o "$LIFEBOAT_RUN_DIR/perf.data" >/dev/null 2>&1 & PERF=$!; sleep 1; }; }
profiled() { [ -z "$PERF" ] || { kill -INT "$PERF"; wait "$PERF" || true; PERF=""; }; }
profile full
u0=$(usage)
full_s=$(timed_backup bench-full full bench)
u1=$(usage)
profiled
full_cost=$(cost "$u0" "$u1")
# Of which taking the snapshot (accepted → started): `rbd snap create` itself takes ~1 s on this
# cluster (most of it the quiesce notification to the image's watchers), which the baselines,
# reading a snapshot made beforehand, do not pay.
snapshot_s=$(python3 - "$LIFEBOAT_RUN_DIR/bench-full.results" <<'PY'
import json, sys
from datetime import datetime
at = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        result = json.loads(line)
        at.setdefault(result["status"], datetime.fromisoformat(result["at"].replace("Z", "+00:00")))
print(round((at["started"] - at["accepted"]).total_seconds(), 3))
PY
)
echo "Lifeboat full: $full_s s (of which the snapshot: $snapshot_s s)"

log "2. 1 % rewritten (10 x 4 MiB, unaligned): Benji differential, Lifeboat incremental"
ops=()
for i in $(seq 0 9); do ops+=("random:$((i * 400 + 1))M:4M:$((100 + i))"); done
edit bench "${ops[@]}" snap:s1
sync
t0=$(now); benji_backup_diff volumes bench s1 s0 >/dev/null; t1=$(now)
benji_diff_s=$(seconds "$t0" "$t1")
incr_s=$(timed_backup bench-incr incremental bench)
grep -q '"parent":"bench-full"' "$LIFEBOAT_RUN_DIR/bench-incr.results" || die "the incremental fell back to a full"
echo "Benji differential: $benji_diff_s s, Lifeboat incremental: $incr_s s"

log "3. restore of the incremental into a new image, next to rbd import of the same raw file"
# The incremental's snapshot is the one Lifeboat keeps (the full's went at its cleanup).
"${RBD[@]}" export --no-progress volumes/bench@lifeboat-bench-incr "$LIFEBOAT_RUN_DIR/import.raw"
expected=$(sha256sum <"$LIFEBOAT_RUN_DIR/import.raw" | cut -d' ' -f1)
# Both read from the page cache: the raw file, and the repository's chunks (which a backup
# drops from the cache once durable). Cold, both would mostly measure this VM's cost of fresh
# page-cache pages, `rbd import` the most (it reads the holes of the 4 GiB file too).
cat "$LIFEBOAT_RUN_DIR/import.raw" >/dev/null
find "$LIFEBOAT_REPOSITORY" -type f -exec cat {} + >/dev/null
sync
u0=$(usage); t0=$(now); "${RBD[@]}" import --no-progress "$LIFEBOAT_RUN_DIR/import.raw" volumes/imported; t1=$(now); u1=$(usage)
import_s=$(seconds "$t0" "$t1") import_cost=$(cost "$u0" "$u1")
rm -f "$LIFEBOAT_RUN_DIR/import.raw"
sync
profile restore
u0=$(usage)
t0=$(now)
"$LIFEBOAT" restore --project bench --backup bench-incr --user bench --to-rbd bench:volumes --image-prefix restored- \
    --follow --json --timeout 3600 >"$LIFEBOAT_RUN_DIR/restore.results"
t1=$(now)
u1=$(usage)
grep -q '"status":"succeeded"' "$LIFEBOAT_RUN_DIR/restore.results" || die "the restore did not succeed"
restore_s=$(seconds "$t0" "$t1") restore_cost=$(cost "$u0" "$u1")
profiled
[ "$("${RBD[@]}" export --no-progress volumes/restored-bench - | sha256sum | cut -d' ' -f1)" = "$expected" ] ||
    die "the restored image differs from the backed-up snapshot"
echo "rbd import: $import_s s, Lifeboat restore: $restore_s s"

log "4. a 1 TiB image with 64 MiB written: full, then an incremental with nothing changed"
edit huge create:1T random:100G:64M:7
huge_full_s=$(timed_backup huge-full full huge)
huge_incr_s=$(timed_backup huge-incr incremental huge)
grep -q '"parent":"huge-full"' "$LIFEBOAT_RUN_DIR/huge-incr.results" || die "the 1 TiB incremental fell back to a full"
echo "1 TiB: full $huge_full_s s, unchanged incremental $huge_incr_s s"
rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$WORKER/status")

python3 - "$export_s" "$benji_full_s" "$full_s" "$benji_diff_s" "$incr_s" "$import_s" "$restore_s" "$huge_full_s" "$huge_incr_s" \
    "$rss_kib" "$RANGE_MIB" "$TRANSFERS" "$snapshot_s" "$export_cost" "$full_cost" "$import_cost" "$restore_cost" \
    "$floor_s" <<'PY'
import json, sys
export_s, benji_full_s, full_s, benji_diff_s, incr_s, import_s, restore_s, huge_full_s, huge_incr_s = map(float, sys.argv[1:10])
rss_kib, range_mib, transfers = map(int, sys.argv[10:13])
snapshot_s = float(sys.argv[13])
export_cost, full_cost, import_cost, restore_cost = map(json.loads, sys.argv[14:18])
floor_s = float(sys.argv[18])
size = 4 << 30
print(f"rbd export {size / export_s / 1e6:.0f} MB/s, Benji {size / benji_full_s / 1e6:.0f} MB/s, "
      f"Lifeboat full {size / full_s / 1e6:.0f} MB/s of image, restore {size / restore_s / 1e6:.0f} MB/s")
print(json.dumps({"benchmark": "ceph", "image_gib": 4, "data_gib": 2, "ranges_mib": range_mib, "transfers_at_once": transfers,
                  "disk_read_and_write_2_gib_seconds": floor_s,
                  "rbd_export": {"seconds": export_s, **export_cost}, "benji_full": {"seconds": benji_full_s},
                  "benji_differential": {"seconds": benji_diff_s},
                  "full": {"seconds": full_s, "snapshot_seconds": snapshot_s, "image_mb_per_s": round(size / full_s / 1e6, 1), **full_cost},
                  "incremental_1_percent": {"seconds": incr_s},
                  "rbd_import": {"seconds": import_s, **import_cost}, "restore": {"seconds": restore_s, **restore_cost},
                  "sparse_1_tib": {"full_seconds": huge_full_s, "unchanged_incremental_seconds": huge_incr_s},
                  "worker_peak_rss_mib": round(rss_kib / 1024, 1),
                  "ratios": {"vs_rbd_export": round(export_s / full_s, 3), "vs_benji": round(benji_full_s / full_s, 3),
                             "restore_vs_rbd_import": round(import_s / restore_s, 3),
                             "incremental_vs_benji_differential": round(benji_diff_s / incr_s, 3),
                             "full_after_snapshot_vs_rbd_export": round(export_s / (full_s - snapshot_s), 3),
                             "full_after_snapshot_vs_disk_floor": round(floor_s / (full_s - snapshot_s), 3)}}))
PY
