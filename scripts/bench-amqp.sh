#!/usr/bin/env bash
# Benchmark of Lifeboat's AMQP layer against python pika, on the same broker in the same run:
# publish-with-confirms of N persistent messages to a fresh quorum queue, then consume-and-ack
# of all of them. Run it as `scripts/bench.sh amqp`.
#
# Starts a RabbitMQ of its own (scripts/broker.sh) on its own ports and data directory, so the
# tests' broker on 5699 is never touched, and stops it at the end if it started it.
# pika (scripts/bench/pika_baseline.py): BlockingConnection, confirm_delivery, basic_publish one
# at a time; basic_qos(prefetch_count=100), basic_consume, basic_ack per message. Publishing
# with a confirm per message is slow, so pika's publish figure is timed over
# BENCH_PIKA_PUBLISH_MESSAGES of the N (the JSON says how many); both consume all N.
# Prints a table, then as the LAST line one JSON object with the figures and the ratios.
#
# Environment: BENCH_MESSAGES (20000), BENCH_PIKA_PUBLISH_MESSAGES (5000), BENCH_SIZE (256 bytes),
# BENCH_PREFETCH (Lifeboat's, 300), BENCH_WINDOW (2048), BENCH_BATCH (1000),
# BENCH_BROKER_PORT (5689), BENCH_BROKER_TLS_PORT (5688), BENCH_RUN_DIR (/tmp/lifeboat-bench).
set -euo pipefail
export LIFEBOAT_RUN_DIR="${BENCH_RUN_DIR:-/tmp/lifeboat-bench}"
source "$(dirname "$0")/lib/common.sh"

MESSAGES=${BENCH_MESSAGES:-20000}
PIKA_PUBLISH=${BENCH_PIKA_PUBLISH_MESSAGES:-5000}
SIZE=${BENCH_SIZE:-256}
PREFETCH=${BENCH_PREFETCH:-300}
WINDOW=${BENCH_WINDOW:-2048}
BATCH=${BENCH_BATCH:-1000}
export LIFEBOAT_BROKER_PORT="${BENCH_BROKER_PORT:-5689}"
export LIFEBOAT_BROKER_TLS_PORT="${BENCH_BROKER_TLS_PORT:-5688}"
URL="amqp://guest:guest@127.0.0.1:$LIFEBOAT_BROKER_PORT/"
PYTHON=/usr/bin/python3 # Debian's, where python3-pika is installed (not a pyenv one)
SWIFT=/opt/swift/usr/bin/swift
[ -x "$SWIFT" ] || SWIFT="$(swift_driver)"

apt_install rabbitmq-server python3-pika openssl pkg-config librabbitmq-dev
mkdir -p "$LIFEBOAT_RUN_DIR"
# rabbitmqctl asked about a node that is not up yet leaves an erl_crash.dump in the current
# directory: keep it out of the source tree.
export ERL_CRASH_DUMP="$LIFEBOAT_RUN_DIR/erl_crash.dump"
cd "$LIFEBOAT_RUN_DIR"

log "building lifeboat-bench (release)"
flock /tmp/lifeboat-swift.lock "$SWIFT" build -c release --product lifeboat-bench --package-path "$LIFEBOAT_ROOT" >&2
BENCH="$("$SWIFT" build -c release --package-path "$LIFEBOAT_ROOT" --show-bin-path)/lifeboat-bench"

started=0
if ! "$LIFEBOAT_ROOT/scripts/broker.sh" status >/dev/null 2>&1; then
    "$LIFEBOAT_ROOT/scripts/broker.sh" start
    started=1
fi
stop_broker() { [ "$started" = 1 ] && "$LIFEBOAT_ROOT/scripts/broker.sh" stop || true; }
trap stop_broker EXIT

OUT="$LIFEBOAT_RUN_DIR/results"
mkdir -p "$OUT"
# A short untimed run first: the fresh broker creates its Raft log and warms up on neither's time.
"$BENCH" amqp --url "$URL" --messages 2000 --size "$SIZE" >/dev/null

log "pika: $MESSAGES messages of $SIZE bytes ($PIKA_PUBLISH of them published with a timed confirm each)"
"$PYTHON" "$LIFEBOAT_ROOT/scripts/bench/pika_baseline.py" --url "$URL" --messages "$MESSAGES" \
    --publish-messages "$PIKA_PUBLISH" --size "$SIZE" --prefetch 100 | tail -1 >"$OUT/pika.json"
log "lifeboat: $MESSAGES messages of $SIZE bytes"
"$BENCH" amqp --url "$URL" --messages "$MESSAGES" --size "$SIZE" --prefetch "$PREFETCH" \
    --window "$WINDOW" --batch "$BATCH" | tail -1 >"$OUT/lifeboat.json"
log "lifeboat again with pika's prefetch (100), for a like-for-like consume figure"
"$BENCH" amqp --url "$URL" --messages "$MESSAGES" --size "$SIZE" --prefetch 100 \
    --window "$WINDOW" --batch "$BATCH" | tail -1 >"$OUT/lifeboat-prefetch100.json"

"$PYTHON" - "$OUT" "$MESSAGES" <<'PY'
import json, sys
out, messages = sys.argv[1], int(sys.argv[2])
lifeboat = json.load(open(f"{out}/lifeboat.json"))
pika = json.load(open(f"{out}/pika.json"))
same_prefetch = json.load(open(f"{out}/lifeboat-prefetch100.json"))
ratios = {
    "vs_pika_publish": round(lifeboat["publish_msgs_per_s"] / pika["publish_msgs_per_s"], 2),
    "vs_pika_consume": round(lifeboat["consume_msgs_per_s"] / pika["consume_msgs_per_s"], 2),
    "vs_pika_consume_same_prefetch": round(same_prefetch["consume_msgs_per_s"] / pika["consume_msgs_per_s"], 2),
}
print("| client | prefetch | published (timed) | publish msg/s | consumed | consume msg/s | requeued at close |")
print("|---|---|---|---|---|---|---|")
for name, f in (("lifeboat", lifeboat), ("lifeboat", same_prefetch), ("pika", pika)):
    print(f"| {name} | {f['prefetch']} | {f.get('publish_messages', f['messages'])} | {f['publish_msgs_per_s']:.0f} | "
          f"{f['messages']} | {f['consume_msgs_per_s']:.0f} | {f['requeued_at_close']} |")
print(f"ratios: publish {ratios['vs_pika_publish']}x (goal 5x), consume {ratios['vs_pika_consume']}x (goal 1.5x), "
      f"consume at prefetch 100 {ratios['vs_pika_consume_same_prefetch']}x")
print(json.dumps({"benchmark": "amqp", "messages": messages, "size": lifeboat["size"],
                  "pika_publish_messages": pika["publish_messages"],
                  "lifeboat": lifeboat, "lifeboat_prefetch_100": same_prefetch, "pika": pika, "ratios": ratios}))
PY
