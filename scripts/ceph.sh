#!/usr/bin/env bash
# A single-node Ceph 16.2 of Lifeboat's own on 127.0.0.1: one mon, one OSD (bluestore on a
# sparse file) and a mgr, cephx on, its own ports, config and data directory, so it never
# touches a Ceph the machine already runs. Used by the tests, the demo and benchmarks.
#
#   scripts/ceph.sh start|stop|restart|reset|status|env
#
# The mon listens on 127.0.0.1:$LIFEBOAT_CEPH_PORT (msgr v2, default 3390) and the next port
# (msgr v1, which QEMU's rbd driver uses); the OSD and the mgr bind ports from
# $LIFEBOAT_CEPH_PORT+2 up to +29. Everything (config, keyrings, data, logs, pid files and
# admin sockets) lives in $LIFEBOAT_RUN_DIR/ceph. `start` creates the pools volumes, vms and
# images (application rbd) and the users client.lifeboat and client.cinder (profile rbd on
# those pools), each with a keyring file $DIR/ceph.client.<name>.keyring. `env` prints the
# variables the tests read.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

PORT="${LIFEBOAT_CEPH_PORT:-3390}"
OSD_SIZE="${LIFEBOAT_CEPH_OSD_SIZE:-20G}"   # sparse: only what is written takes disk space
DIR="$LIFEBOAT_RUN_DIR/ceph"
CONF="$DIR/ceph.conf"
ADMIN_KEYRING="$DIR/ceph.client.admin.keyring"
POOLS=(volumes vms images)
DAEMONS=(mon.a osd.0 mgr.x)
CEPH_PACKAGES=(ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev python3-rbd python3-rados)

ceph_() { timeout 60 ceph -c "$CONF" "$@"; }

write_config() {
    local fsid="$1"
    cat > "$CONF" <<CONF
# Lifeboat's single-node test cluster (scripts/ceph.sh). Not for production.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$PORT,v1:127.0.0.1:$((PORT + 1))]
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
ms bind port min = $((PORT + 2))
ms bind port max = $((PORT + 29))
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $DIR/run
crash dir = $DIR/crash
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 5
mon data avail crit = 2
mon mgr mkfs grace = 86400

[mon]
mon data = $DIR/mon
mon cluster log file = $DIR/log/cluster.log

[osd]
osd data = $DIR/osd
keyring = $DIR/osd/keyring
osd objectstore = bluestore
bluestore block path = $DIR/osd-block.img
bluestore block create = true
bluestore block size = $OSD_SIZE
bluestore block db create = false
bluestore block wal create = false
osd memory target = 1073741824
# Stop cleanly on SIGTERM (fast shutdown skips the umount: no data loss, but a slower mount).
osd fast shutdown = false

[mgr]
mgr data = $DIR/mgr
keyring = $DIR/mgr/keyring
mgr initial modules = iostat

[client]
# Each client finds its own key: ceph.client.admin.keyring, ceph.client.lifeboat.keyring...
keyring = $DIR/\$cluster.\$name.keyring
# Empty: no admin socket per client process (concurrent clients would collide); no log file.
admin socket =
log file =
CONF
}

# pid of a daemon of ours (mon.a, osd.0, mgr.x) if it runs; a stale pid file is removed.
daemon_pid() {
    local name="$1" pidfile="$DIR/run/$1.pid" pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "-c $CONF -i ${name#*.}"; then
        echo "$pid"
        return 0
    fi
    rm -f "$pidfile"
    return 1
}

# Every process started with our config (daemons whose pid file is lost included).
our_pids() { pgrep -f -- "ceph-(mon|osd|mgr) -c $CONF " || true; }

start_daemon() {
    local name="$1" type="${1%%.*}" id="${1#*.}"
    daemon_pid "$name" >/dev/null && return 0
    # Daemonizes once initialized; a failure shows in its exit code and log. It starts clean of
    # what our caller may pass down: no file descriptor beyond 0-2 (a caller that waits for the
    # end of a pipe or socket its child holds, as Swift Foundation's Process does, would wait
    # forever) and no blocked signals (a daemon started from a test process ignored SIGTERM).
    /usr/bin/python3 -c 'import os, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, [])
os.closerange(3, 65536)
os.execvp(sys.argv[1], sys.argv[1:])' "ceph-$type" -c "$CONF" -i "$id" >>"$DIR/log/$name.out" 2>&1 ||
        { tail -n 20 "$DIR/log/$name.log" "$DIR/log/$name.out" >&2 2>/dev/null || true; die "ceph-$type $id did not start"; }
}

authtool() { ceph-authtool "$@" >/dev/null; }

# mon.a, osd.0 and mgr.x with their keys, and the keys of client.admin/lifeboat/cinder.
create_cluster() {
    log "creating a Ceph cluster in $DIR"
    rm -rf "$DIR"
    mkdir -p "$DIR"/{run,log,crash,mon,osd,mgr}
    chmod 755 "$DIR"
    local fsid osd_uuid osd_key mon_keyring="$DIR/mon.keyring" pool_caps=""
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
    write_config "$fsid"
    for pool in "${POOLS[@]}"; do pool_caps+="${pool_caps:+, }profile rbd pool=$pool"; done

    authtool --create-keyring "$mon_keyring" --gen-key -n mon. --cap mon 'allow *'
    authtool --create-keyring "$ADMIN_KEYRING" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
    authtool --create-keyring "$DIR/mgr/keyring" --gen-key -n mgr.x \
        --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *'
    for user in lifeboat cinder; do
        authtool --create-keyring "$DIR/ceph.client.$user.keyring" --gen-key -n "client.$user" \
            --cap mon 'profile rbd' --cap osd "$pool_caps" --cap mgr "$pool_caps"
    done
    # The OSD's key, written with ceph-authtool (ceph-osd --mkfs does not write it).
    osd_key="$(ceph-authtool --gen-print-key)"
    authtool --create-keyring "$DIR/osd/keyring" -n osd.0 --add-key "$osd_key" \
        --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
    for keyring in "$ADMIN_KEYRING" "$DIR/mgr/keyring" "$DIR/osd/keyring" "$DIR"/ceph.client.{lifeboat,cinder}.keyring; do
        authtool "$mon_keyring" --import-keyring "$keyring"
    done
    # Test keys, readable by the services (cinder, qemu) that use them.
    chmod 644 "$DIR"/*.keyring

    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$PORT,v1:127.0.0.1:$((PORT + 1))]" "$DIR/monmap" >/dev/null
    ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" --keyring "$mon_keyring" >>"$DIR/log/mkfs.out" 2>&1 ||
        { tail -n 20 "$DIR/log/mkfs.out" >&2; die "ceph-mon --mkfs failed"; }
    ceph-osd -c "$CONF" -i 0 --mkfs --no-mon-config --osd-uuid "$osd_uuid" --monmap "$DIR/monmap" >>"$DIR/log/mkfs.out" 2>&1 ||
        { tail -n 20 "$DIR/log/mkfs.out" "$DIR/log/osd.0.log" >&2; die "ceph-osd --mkfs failed"; }
    rm -f "$mon_keyring"

    start_daemon mon.a
    ceph_ osd new "$osd_uuid" 0 >/dev/null
}

# Runs the mon commands in one process (each `ceph` command costs ~0.5 s of Python start-up).
create_pools() {
    /usr/bin/python3 - "$CONF" "${POOLS[@]}" <<'PY' || die "could not create the pools"
import json, sys, rados
def cmd(c, **kw):
    ret, out, err = c.mon_command(json.dumps(kw), b"")
    if ret != 0:
        sys.exit(f"ceph {kw['prefix']}: {err}")
    return out
with rados.Rados(conffile=sys.argv[1], name="client.admin", conf={"rados_mon_op_timeout": "30"}) as c:
    existing = json.loads(cmd(c, prefix="osd pool ls", format="json"))
    for pool in sys.argv[2:]:
        if pool not in existing:
            cmd(c, prefix="osd pool create", pool=pool, pg_num=8, pgp_num=8, pool_type="replicated")
        cmd(c, prefix="osd pool application enable", pool=pool, app="rbd")
PY
}

# Until the OSD is up, every placement group active and the mgr available.
wait_ready() {
    local deadline=$((SECONDS + 120))
    until /usr/bin/python3 - "$CONF" <<'PY' 2>/dev/null
import json, sys, rados
with rados.Rados(conffile=sys.argv[1], name="client.admin",
                 conf={"rados_mon_op_timeout": "5", "rados_osd_op_timeout": "5"}) as c:
    ret, out, _ = c.mon_command(json.dumps({"prefix": "mgr stat", "format": "json"}), b"")
    assert ret == 0 and json.loads(out)["available"]
    for pool in ("volumes", "vms", "images"):
        with c.open_ioctx(pool) as io:
            io.write_full("lifeboat-ready", b"ok")
            io.remove_object("lifeboat-ready")
PY
    do
        [ $SECONDS -lt $deadline ] || { ceph_ -s >&2 || true; die "the Ceph cluster did not become ready"; }
        for name in "${DAEMONS[@]}"; do
            daemon_pid "$name" >/dev/null ||
                { tail -n 20 "$DIR/log/$name.log" >&2 2>/dev/null || true; die "$name stopped"; }
        done
        sleep 0.3
    done
}

all_running() {
    for name in "${DAEMONS[@]}"; do daemon_pid "$name" >/dev/null || return 1; done
}

start() {
    if all_running; then return 0; fi
    apt_install "${CEPH_PACKAGES[@]}"
    # A crashed run: daemons of ours whose pid file is gone would hold the ports.
    for name in "${DAEMONS[@]}"; do daemon_pid "$name" >/dev/null || true; done
    local orphans
    orphans="$(our_pids)"
    if [ -n "$orphans" ] && ! all_running; then
        local known=" "
        for name in "${DAEMONS[@]}"; do known+="$(daemon_pid "$name" || true) "; done
        for pid in $orphans; do
            [[ "$known" == *" $pid "* ]] || { log "killing a stray Ceph daemon ($pid)"; kill -9 "$pid" 2>/dev/null || true; }
        done
    fi
    # A cluster whose creation did not finish is made again.
    if [ ! -f "$DIR/initialized" ]; then
        stop_daemons
        create_cluster
    else
        write_config "$(awk '$1 == "fsid" {print $3}' "$CONF")"
        log "starting the Ceph cluster in $DIR (mon 127.0.0.1:$PORT)"
    fi
    for name in "${DAEMONS[@]}"; do start_daemon "$name"; done
    create_pools
    wait_ready
    touch "$DIR/initialized"
}

stop_daemons() {
    # mgr first, then the OSD (which unmounts bluestore cleanly), the mon last.
    local pids=()
    for name in mgr.x osd.0 mon.a; do
        local pid
        if pid="$(daemon_pid "$name")"; then
            kill -TERM "$pid" 2>/dev/null || true
            [ "$name" = mon.a ] || pids+=("$pid")
            if [ "$name" = osd.0 ]; then
                for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
        fi
    done
    for pid in $(our_pids); do
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { log "killing Ceph daemon $pid (did not stop in 30 s)"; kill -9 "$pid" 2>/dev/null || true; }
    done
    rm -f "$DIR"/run/*.pid
}

stop() {
    [ -d "$DIR" ] || return 0
    if [ -n "$(our_pids)" ]; then log "stopping the Ceph cluster in $DIR"; fi
    stop_daemons
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    reset) stop; rm -rf "$DIR"; start ;;
    status)
        if all_running; then
            ceph_ health 2>/dev/null || true
            echo "running"
        else
            echo "stopped"; exit 1
        fi
        ;;
    env)
        echo "export LIFEBOAT_TEST_CEPH_CONF=$CONF"
        echo "export LIFEBOAT_TEST_CEPH_KEYRING=$DIR/ceph.client.lifeboat.keyring"
        echo "export LIFEBOAT_TEST_CEPH_USER=lifeboat"
        echo "export LIFEBOAT_TEST_CEPH_ADMIN_KEYRING=$ADMIN_KEYRING"
        echo "export LIFEBOAT_TEST_CEPH_POOL=volumes"
        echo "export LIFEBOAT_TEST_CEPH_CINDER_KEYRING=$DIR/ceph.client.cinder.keyring"
        echo "export LIFEBOAT_TEST_CEPH_CTL=$LIFEBOAT_ROOT/scripts/ceph.sh"
        ;;
    *) echo "usage: $0 start|stop|restart|reset|status|env" >&2; exit 2 ;;
esac
