#!/usr/bin/env bash
# Benchmark of Lifeboat's SSH client (libssh2) against OpenSSH's own client, on the same sshd
# (scripts/sshd.sh, loopback) in the same run. Run it as `scripts/bench.sh ssh`.
#
# A file of BENCH_SSH_MIB MiB (default 1024) of random bytes is read from the page cache:
#   read:  lifeboat `stream("cat FILE")` into a sink  vs  `ssh host cat FILE > /dev/null`
#   write: lifeboat SSHChannel into `cat > /dev/null` vs  `ssh host 'cat > /dev/null' < FILE`
# OpenSSH is measured twice: with its default cipher (chacha20-poly1305) and with what libssh2
# 1.10 negotiates (aes128-ctr + hmac-sha2-256), the like-for-like figure. Best of BENCH_RUNS
# (3) each. Prints a table, then as the LAST line one JSON object with the figures and ratios.
set -euo pipefail
export LIFEBOAT_RUN_DIR="${BENCH_RUN_DIR:-/tmp/lifeboat-bench}"
source "$(dirname "$0")/lib/common.sh"

MIB=${BENCH_SSH_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
export LIFEBOAT_SSHD_PORT="${BENCH_SSHD_PORT:-2289}"
SWIFT=/opt/swift/usr/bin/swift
[ -x "$SWIFT" ] || SWIFT="$(swift_driver)"
PYTHON=/usr/bin/python3

apt_install openssh-server openssh-client openssl python3 pkg-config libssh2-1-dev librabbitmq-dev
mkdir -p "$LIFEBOAT_RUN_DIR"
log "building lifeboat-bench (release)"
flock /tmp/lifeboat-swift.lock "$SWIFT" build -c release --product lifeboat-bench --package-path "$LIFEBOAT_ROOT" >&2
BENCH="$("$SWIFT" build -c release --package-path "$LIFEBOAT_ROOT" --show-bin-path)/lifeboat-bench"

started=0
if ! "$LIFEBOAT_ROOT/scripts/sshd.sh" status >/dev/null 2>&1; then
    "$LIFEBOAT_ROOT/scripts/sshd.sh" start
    started=1
fi
eval "$("$LIFEBOAT_ROOT/scripts/sshd.sh" env)"
OUT="$LIFEBOAT_RUN_DIR/ssh-bench"
cleanup() {
    rm -f "$OUT/file"
    [ "$started" = 1 ] && "$LIFEBOAT_ROOT/scripts/sshd.sh" stop || true
}
trap cleanup EXIT
mkdir -p "$OUT"
FILE="$OUT/file"
KEY="$LIFEBOAT_TEST_SSH_KEYS/id_ed25519"
KNOWN="$LIFEBOAT_TEST_SSHD_DIR/known_hosts"
log "making a $MIB MiB file and reading it into the page cache"
head -c "$((MIB << 20))" /dev/urandom > "$FILE"
cat "$FILE" > /dev/null

# Seconds (wall) of the best of $RUNS runs of a command.
best_of() {
    "$PYTHON" - "$RUNS" "$@" <<'PY'
import subprocess, sys, time
runs, command = int(sys.argv[1]), sys.argv[2:]
best = None
for _ in range(runs):
    start = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    best = elapsed if best is None else min(best, elapsed)
print(f"{best:.3f}")
PY
}
ssh_default=(ssh -q -i "$KEY" -o BatchMode=yes -o "UserKnownHostsFile=$KNOWN" -o StrictHostKeyChecking=yes -p "$LIFEBOAT_SSHD_PORT" "root@127.0.0.1")
ssh_ctr=(ssh -c aes128-ctr -m hmac-sha2-256 "${ssh_default[@]:1}")

log "lifeboat (libssh2): read and write, best of $RUNS"
"$BENCH" ssh --port "$LIFEBOAT_SSHD_PORT" --key "$KEY" --known-hosts "$KNOWN" --file "$FILE" --runs "$RUNS" | tail -1 > "$OUT/lifeboat.json"
log "OpenSSH: read and write, default cipher and aes128-ctr, best of $RUNS"
ssh_read_default=$(best_of "${ssh_default[@]}" cat "$FILE")
ssh_read_ctr=$(best_of "${ssh_ctr[@]}" cat "$FILE")
# The file on stdin: bash -c opens it for each run.
ssh_write_default=$(best_of bash -c '"$@" "cat > /dev/null" < "$0"' "$FILE" "${ssh_default[@]}")
ssh_write_ctr=$(best_of bash -c '"$@" "cat > /dev/null" < "$0"' "$FILE" "${ssh_ctr[@]}")

"$PYTHON" - "$OUT/lifeboat.json" "$MIB" "$ssh_read_default" "$ssh_read_ctr" "$ssh_write_default" "$ssh_write_ctr" <<'PY'
import json, sys
lifeboat = json.load(open(sys.argv[1]))
mib = int(sys.argv[2])
size = mib << 20
rd, rc, wd, wc = (float(x) for x in sys.argv[3:7])
mbps = lambda seconds: round(size / seconds / 1e6, 1)
openssh = {"read_default_mb_per_s": mbps(rd), "read_aes128ctr_mb_per_s": mbps(rc),
           "write_default_mb_per_s": mbps(wd), "write_aes128ctr_mb_per_s": mbps(wc)}
ratios = {
    "read_vs_openssh_default": round(lifeboat["read_mb_per_s"] / openssh["read_default_mb_per_s"], 2),
    "read_vs_openssh_aes128ctr": round(lifeboat["read_mb_per_s"] / openssh["read_aes128ctr_mb_per_s"], 2),
    "write_vs_openssh_default": round(lifeboat["write_mb_per_s"] / openssh["write_default_mb_per_s"], 2),
    "write_vs_openssh_aes128ctr": round(lifeboat["write_mb_per_s"] / openssh["write_aes128ctr_mb_per_s"], 2),
}
print("| client | read MB/s | write MB/s |")
print("|---|---|---|")
print(f"| lifeboat (libssh2 {lifeboat['libssh2']}, aes128-ctr) | {lifeboat['read_mb_per_s']} | {lifeboat['write_mb_per_s']} |")
print(f"| OpenSSH default (chacha20-poly1305) | {openssh['read_default_mb_per_s']} | {openssh['write_default_mb_per_s']} |")
print(f"| OpenSSH aes128-ctr + hmac-sha2-256 | {openssh['read_aes128ctr_mb_per_s']} | {openssh['write_aes128ctr_mb_per_s']} |")
print(json.dumps({"benchmark": "ssh", "mib": mib, "lifeboat": lifeboat, "openssh": openssh, "ratios": ratios}))
PY
