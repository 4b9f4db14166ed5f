#!/usr/bin/env bash
# Benchmark of the backup repository against restic and borg on the same image.
#
# Builds repository-tool (release), makes a disk image (default 4 GiB: half zeros, a quarter
# random, a quarter compressible text, in 64 MiB stripes), then for each tool: full backup,
# rewrite 1 % of the image in random 64 KiB-aligned runs of 64 KiB..1 MiB, incremental backup,
# stored bytes, restore of the latest backup. Peak RSS from /usr/bin/time -v.
# Prints a table, then as the LAST line one JSON object with every figure and the ratios.
#
# Environment: BENCH_SIZE_MIB (default 4096), BENCH_DIR (default /var/tmp), BENCH_KEEP=1 keeps the files.
set -euo pipefail

SIZE_MIB=${BENCH_SIZE_MIB:-4096}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SWIFT=/opt/swift/usr/bin/swift
LEVEL=${BENCH_LEVEL:-1} # Lifeboat's default zstd level (RepositoryOptions); borg gets the same.

for tool in restic borg /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "bench-repository: $tool is required" >&2; exit 1; }
done

flock /tmp/lifeboat-swift.lock "$SWIFT" build -c release --product repository-tool --package-path "$ROOT" >&2
TOOL=$("$SWIFT" build -c release --package-path "$ROOT" --show-bin-path)/repository-tool

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/lifeboat-bench.XXXXXX")
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
IMG=$WORK/disk.img
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$WORK/borg-home RESTIC_CACHE_DIR=$WORK/restic-cache

echo "bench-repository: making a ${SIZE_MIB} MiB image in $WORK" >&2
python3 - "$IMG" "$SIZE_MIB" <<'PY'
import os, random, sys
path, size_mib = sys.argv[1], int(sys.argv[2])
stripe = 64 << 20
rng = random.Random(1)
words = [w.strip() for w in open('/usr/share/dict/words')] if os.path.exists('/usr/share/dict/words') else \
    ["instance", "volume", "snapshot", "backup", "restore", "chunk", "index", "nova", "cinder", "glance", "neutron"]
def text_stripe(n):
    # Log-like lines: compressible, but never repeating, so no tool can dedup them.
    out, size, i = [], 0, rng.randrange(1 << 30)
    while size < n:
        line = "2026-11-27T%02d:%02d:%02d.%06d worker-%d %s %s id=%08x bytes=%d\n" % (
            (i >> 20) % 24, (i >> 14) % 60, (i >> 8) % 60, i % 1000000, i % 7,
            rng.choice(words), rng.choice(words), rng.getrandbits(32), rng.getrandbits(20))
        out.append(line); size += len(line); i += 1
    return "".join(out).encode()[:n]
with open(path, "wb") as f:
    for s in range(size_mib * (1 << 20) // stripe):
        kind = s % 4  # zero, random, zero, text
        if kind == 1: f.write(os.urandom(stripe))
        elif kind == 3: f.write(text_stripe(stripe))
        else: f.seek(stripe, 1)
    f.truncate()
PY
sync

# run NAME CMD...: wall seconds and peak RSS (KiB) of one command into $WORK/NAME.{secs,rss}
# Each run starts after a sync, so no tool waits behind the previous tool's writeback.
run() {
  local name=$1; shift
  local start end
  sync
  start=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || {
    echo "bench-repository: $name failed:" >&2; tail -20 "$WORK/$name.err" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print($end - $start)" >"$WORK/$name.secs"
  awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time" >"$WORK/$name.rss"
}

rewrite() {
  python3 - "$IMG" <<'PY'
import os, random, sys
path = sys.argv[1]
size = os.path.getsize(path)
rng = random.Random(2)
target, done, unit = size // 100, 0, 64 << 10
with open(path, "r+b") as f:
    while done < target:
        length = unit * rng.randint(1, 16)
        offset = unit * rng.randrange((size - length) // unit)
        f.seek(offset); f.write(os.urandom(length)); done += length
PY
  sync
}

# Full backups of the original image.
"$TOOL" init "$WORK/lb" --level $LEVEL ${BENCH_CHUNK_SIZE:+--chunk-size $BENCH_CHUNK_SIZE}
LIFEBOAT_PASSPHRASE=bench "$TOOL" init "$WORK/lbenc" --level $LEVEL ${BENCH_CHUNK_SIZE:+--chunk-size $BENCH_CHUNK_SIZE}
restic init --repo "$WORK/restic" -q
borg init --encryption=none "$WORK/borg"
cat "$IMG" >/dev/null # page cache, the same for everyone
run lb_full "$TOOL" backup "$WORK/lb" "$IMG" full vda
LIFEBOAT_PASSPHRASE=bench run lbenc_full "$TOOL" backup "$WORK/lbenc" "$IMG" full vda
run restic_full restic --repo "$WORK/restic" backup -q "$IMG"
run borg_full borg create --compression zstd,$LEVEL "$WORK/borg::full" "$IMG"

# 1 % rewritten, then incrementals.
rewrite
cat "$IMG" >/dev/null
run lb_incr "$TOOL" backup "$WORK/lb" "$IMG" incr vda --parent full
LIFEBOAT_PASSPHRASE=bench run lbenc_incr "$TOOL" backup "$WORK/lbenc" "$IMG" incr vda --parent full
run restic_incr restic --repo "$WORK/restic" backup -q "$IMG"
run borg_incr borg create --compression zstd,$LEVEL "$WORK/borg::incr" "$IMG"

# Stored bytes after both backups.
for r in lb lbenc restic borg; do du -sb "$WORK/$r" | cut -f1 >"$WORK/$r.stored"; done

# Restores of the latest backup (from page cache: the repositories were just written).
run lb_restore "$TOOL" restore "$WORK/lb" incr vda "$WORK/lb.out"
cmp "$IMG" "$WORK/lb.out" || { echo "bench-repository: Lifeboat restore differs" >&2; exit 1; }
rm -f "$WORK/lb.out"
LIFEBOAT_PASSPHRASE=bench run lbenc_restore "$TOOL" restore "$WORK/lbenc" incr vda "$WORK/lbenc.out"
rm -f "$WORK/lbenc.out"
run restic_restore restic --repo "$WORK/restic" restore latest --target "$WORK/restic.out"
rm -rf "$WORK/restic.out"
mkdir -p "$WORK/borg.out"
(cd "$WORK/borg.out" && run borg_restore borg extract "$WORK/borg::incr")
rm -rf "$WORK/borg.out"

python3 - "$WORK" "$SIZE_MIB" <<'PY'
import json, sys
work, size_mib = sys.argv[1], int(sys.argv[2])
image = size_mib * (1 << 20)
def val(name, kind): return float(open(f"{work}/{name}.{kind}").read().strip())
tools = {"lifeboat": "lb", "lifeboat_encrypted": "lbenc", "restic": "restic", "borg": "borg"}
figures = {}
for label, key in tools.items():
    f = {}
    for phase in ("full", "incr", "restore"):
        secs = val(f"{key}_{phase}", "secs")
        f[f"{phase}_seconds"] = round(secs, 3)
        f[f"{phase}_MBps"] = round(image / secs / 1e6, 1)
        f[f"{phase}_peak_rss_MiB"] = round(val(f"{key}_{phase}", "rss") / 1024, 1)
    f["stored_bytes"] = int(val(key, "stored"))
    figures[label] = f
lb, restic, borg = figures["lifeboat"], figures["restic"], figures["borg"]
ratios = {
    "vs_restic": round(restic["full_seconds"] / lb["full_seconds"], 2),
    "vs_borg": round(borg["full_seconds"] / lb["full_seconds"], 2),
    "stored_vs_restic": round(lb["stored_bytes"] / restic["stored_bytes"], 3),
    "encrypted_vs_restic": round(restic["full_seconds"] / figures["lifeboat_encrypted"]["full_seconds"], 2),
}
print("| tool | full s | full MB/s | incr s | stored MB | restore s | restore MB/s | peak RSS MiB (full/incr/restore) |")
print("|---|---|---|---|---|---|---|---|")
for label, f in figures.items():
    print(f"| {label} | {f['full_seconds']} | {f['full_MBps']} | {f['incr_seconds']} | {f['stored_bytes']/1e6:.1f} | "
          f"{f['restore_seconds']} | {f['restore_MBps']} | {f['full_peak_rss_MiB']}/{f['incr_peak_rss_MiB']}/{f['restore_peak_rss_MiB']} |")
print(json.dumps({"image_bytes": image, "tools": figures, "ratios": ratios}, sort_keys=True))
PY
