#!/usr/bin/env bash
# Benchmark of the libvirt strategy over loopback SSH, against a real hypervisor
# (scripts/hypervisor.sh host 3: libvirtd + QEMU + sshd in a network namespace), a real
# RabbitMQ and one `lifeboat worker` (two transfers at once):
#  1. full backup of a running VM's 4 GiB raw disk holding 2 GiB of random data (64 MiB data
#     runs between 64 MiB holes), next to `ssh cat disk > /dev/null` and `scp` of the same file
#     with OpenSSH in the same run (BENCH_TRANSFERS ranges at once, default 1; BENCH_RANGE_MIB, 512);
#  2. the guest rewrites 1 % of the disk in random 64 KiB-aligned runs of 64 KiB to 1 MiB; an
#     incremental reads from the hypervisor (the worker's lifeboat_source_bytes_total) divided by
#     the bytes changed is the read amplification;
#  3. the worker's peak RSS (during 1 and 2);
#  4. a full backup again, into a fresh repository, over the unencrypted data path (dataPath tcp).
# Last line: one JSON object with the figures and
# "ratios": {"vs_ssh_cat": X, "vs_scp": Y, "fast_path_vs_ssh_cat": F, "incremental_read_amplification": Z}.
set -euo pipefail
export LIFEBOAT_RUN_DIR="${LIFEBOAT_RUN_DIR:-/tmp/lifeboat-bench-libvirt}"
source "$(dirname "$0")/lib/common.sh"
cd "$LIFEBOAT_ROOT"
export LIFEBOAT_BROKER_PORT="${LIFEBOAT_BROKER_PORT:-5685}" LIFEBOAT_BROKER_TLS_PORT="${LIFEBOAT_BROKER_TLS_PORT:-5684}"
build_release_lifeboat
H=3
ADDRESS=10.200.0.$((H + 1))
METRICS=127.0.0.1:9185

scripts/broker.sh reset >/dev/null
scripts/hypervisor.sh reset >/dev/null
WORKER=""
cleanup() {
    [ -z "$WORKER" ] || { kill -TERM "$WORKER" 2>/dev/null || true; wait "$WORKER" 2>/dev/null || true; }
    scripts/hypervisor.sh reset >/dev/null || true
    scripts/broker.sh stop >/dev/null
    rm -rf "$LIFEBOAT_RUN_DIR/repository"
}
trap cleanup EXIT
scripts/hypervisor.sh start $H >/dev/null

export LIFEBOAT_AMQP_URL="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT/"
export LIFEBOAT_REPOSITORY="$LIFEBOAT_RUN_DIR/repository" LIFEBOAT_LOG_LEVEL="${BENCH_LOG_LEVEL:-warning}"
# Transfers at once and range size: on this 2-core machine one stream at a time is fastest (the
# hypervisor's sshd, libssh2's decryption and the chunk storers already share both cores).
TRANSFERS="${BENCH_TRANSFERS:-1}" RANGE_MIB="${BENCH_RANGE_MIB:-512}"
export LIFEBOAT_RANGE_MIB=$RANGE_MIB LIFEBOAT_TASK_CONCURRENCY=$TRANSFERS LIFEBOAT_SOURCE_CONCURRENCY=$TRANSFERS
export LIFEBOAT_HYPERVISORS="$LIFEBOAT_RUN_DIR/hypervisors.json" LIFEBOAT_METRICS_ADDRESS="$METRICS"
cat >"$LIFEBOAT_HYPERVISORS" <<EOF
{"hypervisors": [{"name": "bench", "address": "$ADDRESS", "user": "root", "privateKeyFile": "$LIFEBOAT_RUN_DIR/ssh/id_ed25519",
                  "knownHostsFile": "$LIFEBOAT_RUN_DIR/ssh/known_hosts"},
                 {"name": "bench-tcp", "address": "$ADDRESS", "user": "root", "privateKeyFile": "$LIFEBOAT_RUN_DIR/ssh/id_ed25519",
                  "knownHostsFile": "$LIFEBOAT_RUN_DIR/ssh/known_hosts", "dataPath": "tcp"}]}
EOF
SSH=(ssh -F /dev/null -i "$LIFEBOAT_RUN_DIR/ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
     -o UserKnownHostsFile="$LIFEBOAT_RUN_DIR/ssh/known_hosts" -o StrictHostKeyChecking=yes)

log "a running VM with a 4 GiB raw disk: 2 GiB of random data in 64 MiB runs, 2 GiB of holes"
DISK=$(scripts/hypervisor.sh vm $H bench-vm raw 4096 --no-start | tail -n 1)
for i in $(seq 0 31); do
    head -c 64M /dev/urandom | dd of="$DISK" bs=1M seek=$((i * 128)) conv=notrunc status=none
done
scripts/hypervisor.sh virsh $H start bench-vm >/dev/null
REMOTE=/var/lib/libvirt/images/$(basename "$DISK")

now() { date +%s.%N; }
seconds() { python3 -c "print(round($2 - $1, 3))"; }
metric() {  # the worker's lifeboat_source_bytes_total
    python3 -c "
import urllib.request
text = urllib.request.urlopen('http://$METRICS/metrics').read().decode()
print(sum(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith('lifeboat_source_bytes_total')))"
}

log "baselines: OpenSSH reads the whole file (page cache warmed first)"
"${SSH[@]}" "root@$ADDRESS" cat "$REMOTE" >/dev/null
t0=$(now); "${SSH[@]}" "root@$ADDRESS" cat "$REMOTE" >/dev/null; t1=$(now)
ssh_s=$(seconds "$t0" "$t1")
t0=$(now)
scp -q -F /dev/null -i "$LIFEBOAT_RUN_DIR/ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$LIFEBOAT_RUN_DIR/ssh/known_hosts" "root@$ADDRESS:$REMOTE" /dev/null
t1=$(now)
scp_s=$(seconds "$t0" "$t1")
echo "ssh cat: $ssh_s s, scp: $scp_s s"

# A worker on a fresh repository.
fresh_worker() {
    [ -z "$WORKER" ] || { kill -TERM "$WORKER"; wait "$WORKER" || true; }
    rm -rf "$LIFEBOAT_REPOSITORY"
    "$LIFEBOAT" repo init --repo "$LIFEBOAT_REPOSITORY" >/dev/null
    "$LIFEBOAT" worker >>"$LIFEBOAT_RUN_DIR/worker.log" 2>&1 &
    WORKER=$!
    sleep 1
}
# timed_backup ID MODE HYPERVISOR: runs the backup to its end, prints its seconds.
timed_backup() {
    local t0 t1
    t0=$(now)
    "$LIFEBOAT" backup --project bench --instance bench-vm --mode "$2" --request-id "$1" --libvirt "$3/bench-vm" \
        --follow --json --timeout 1800 >"$LIFEBOAT_RUN_DIR/$1.results"
    t1=$(now)
    grep -q '"status":"succeeded"' "$LIFEBOAT_RUN_DIR/$1.results" || die "backup $1 did not succeed"
    seconds "$t0" "$t1"
}

rm -f "$LIFEBOAT_RUN_DIR/worker.log"
fresh_worker

log "1. full backup (snapshot, $((4096 / RANGE_MIB)) range tasks over SSH, $TRANSFERS at a time, commit)"
full_s=$(timed_backup bench-full full bench)
full_read=$(metric)
echo "full: $full_s s, $full_read bytes read from the hypervisor"

log "2. the guest rewrites 1 % of the disk in random runs; an incremental"
changed=$(python3 - <<'PY' >"$LIFEBOAT_RUN_DIR/writes"
import random
random.seed(20261127)
size, target, unit = 4 << 30, (4 << 30) // 100, 64 << 10
taken, runs, total = set(), [], 0
while total < target:
    length = random.randint(1, 16) * unit
    start = random.randrange(0, (size - length) // unit) * unit
    cells = set(range(start // unit, (start + length) // unit))
    if cells & taken:
        continue
    taken |= cells
    runs.append((start, length))
    total += length
for start, length in runs:
    print(start, length, random.randint(1, 255))
PY
python3 -c "import sys; print(sum(int(l.split()[1]) for l in open(sys.argv[1])))" "$LIFEBOAT_RUN_DIR/writes")
while read -r start length byte; do
    scripts/hypervisor.sh guest-write $H bench-vm "$start" "$length" "$(printf '0x%02x' "$byte")" >/dev/null
done <"$LIFEBOAT_RUN_DIR/writes"
incr_s=$(timed_backup bench-incr incremental bench)
grep -q '"parent":"bench-full"' "$LIFEBOAT_RUN_DIR/bench-incr.results" || die "the incremental fell back to a full"
incr_read=$(( $(metric) - full_read ))
rss_kib=$(awk '/VmHWM/ { print $2 }' "/proc/$WORKER/status")
echo "incremental: $incr_s s, $incr_read bytes read for $changed bytes changed"

log "3. a full backup over the unencrypted data path (dataPath tcp), into a fresh repository"
rm -f "$LIFEBOAT_RUN_DIR/worker.log"
fresh_worker
tcp_s=$(timed_backup bench-tcp full bench-tcp)
echo "fast path full: $tcp_s s"

python3 - "$ssh_s" "$scp_s" "$full_s" "$full_read" "$incr_s" "$incr_read" "$changed" "$rss_kib" "$RANGE_MIB" "$TRANSFERS" "$tcp_s" <<'PY'
import json, sys
ssh_s, scp_s, full_s = map(float, sys.argv[1:4])
tcp_s = float(sys.argv.pop())
full_read, incr_s, incr_read, changed, rss_kib, range_mib, transfers = float(sys.argv[4]), float(sys.argv[5]), *map(int, sys.argv[6:])
size = 4 << 30
print(f"ssh cat {size / ssh_s / 1e6:.0f} MB/s, scp {size / scp_s / 1e6:.0f} MB/s, "
      f"lifeboat full {size / full_s / 1e6:.0f} MB/s of disk ({full_read / full_s / 1e6:.0f} MB/s read)")
print(json.dumps({"benchmark": "libvirt", "disk_gib": 4, "data_gib": 2, "ranges_mib": range_mib, "transfers_at_once": transfers,
                  "ssh_cat": {"seconds": ssh_s}, "scp": {"seconds": scp_s},
                  "full": {"seconds": full_s, "bytes_read": int(full_read), "disk_mb_per_s": round(size / full_s / 1e6, 1)},
                  "incremental": {"seconds": incr_s, "bytes_read": incr_read, "bytes_changed": changed},
                  "full_fast_path": {"seconds": tcp_s, "disk_mb_per_s": round(size / tcp_s / 1e6, 1)},
                  "worker_peak_rss_mib": round(rss_kib / 1024, 1),
                  "ratios": {"vs_ssh_cat": round(ssh_s / full_s, 3), "vs_scp": round(scp_s / full_s, 3),
                             "fast_path_vs_ssh_cat": round(ssh_s / tcp_s, 3),
                             "incremental_read_amplification": round(incr_read / changed, 3)}}))
PY
