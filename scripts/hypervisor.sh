#!/usr/bin/env bash
# Real KVM-hypervisor stand-ins for the tests, the demo and the benchmarks: host N (1..4) is a
# network namespace `lifeboat-hvN` with its own libvirtd, virtlogd and sshd (QEMU in TCG mode),
# reached from this machine at 10.200.0.(N+1) over a veth pair (this side 10.200.0.1; /32
# routes only, no default route: nothing leaves the machine).
#
#   scripts/hypervisor.sh start [N...]        bring hosts up (default: 1 2); running ones: no-op
#   scripts/hypervisor.sh stop N...|all       destroy VMs, stop daemons, remove netns and veth
#   scripts/hypervisor.sh reset               stop all and forget every host's state
#   scripts/hypervisor.sh status | env        what runs | `export` lines for the tests
#   scripts/hypervisor.sh vm N DOMAIN raw|qcow2 SIZE_MIB [--no-start] [--replace]
#   scripts/hypervisor.sh guest-write N DOMAIN OFFSET LENGTH BYTE   (e.g. 0 4M 0xab)
#   scripts/hypervisor.sh virsh N ARGS... | exec N CMD...           run inside host N
#   scripts/hypervisor.sh link down|up N      cut / restore host N's network link
#   scripts/hypervisor.sh rekey N             new sshd host key, known_hosts left stale
#
# Each host keeps its private /run/libvirt, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt,
# /var/lib/nova (for a nova-compute that scripts/openstack.sh runs there), /etc/hosts and
# /run/sshd in $LIFEBOAT_RUN_DIR/hvN/ (bind mounts in a mount namespace held open by a `sleep`
# whose PID is hvN/holder.pid), so disks are readable from here at
# $LIFEBOAT_RUN_DIR/hvN/var-lib-libvirt/images/. Root logs in over SSH with
# $LIFEBOAT_RUN_DIR/ssh/id_ed25519 (or id_rsa), checking $LIFEBOAT_RUN_DIR/ssh/known_hosts.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

SELF="$(readlink -f "$0")"
PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils openssh-server openssh-client iproute2)
MAX_HOSTS=4
ROOT_ADDRESS=10.200.0.1
SSH_DIR="$LIFEBOAT_RUN_DIR/ssh"
KNOWN_HOSTS="$SSH_DIR/known_hosts"
CLIENT_KEY="$SSH_DIR/id_ed25519"
# Which run directory owns each host: one machine, one set of addresses.
OWNER_DIR=/run/lifeboat-hypervisors
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Daemons get a clean environment, not the caller's.
CLEAN_ENV=(env -i "PATH=$CLEAN_PATH" HOME=/root LANG=C.UTF-8 LIBVIRT_DEFAULT_URI=qemu:///system)
VM_MEMORY_MIB=96
# QEMU capabilities cache of the stand-ins: shared by them (one ~5 s probe per machine, not per
# host or run directory), apart from this machine's own libvirtd (see prepare_dirs).
CAPS_CACHE=/var/cache/lifeboat-hypervisors/libvirt

hv_dir() { echo "$LIFEBOAT_RUN_DIR/hv$1"; }
ns_name() { echo "lifeboat-hv$1"; }
address() { echo "10.200.0.$(($1 + 1))"; }
veth_root() { echo "lb-hv$1"; }      # this side; the host's side is its `eth0`
images_dir() { echo "$(hv_dir "$1")/var-lib-libvirt/images"; }

ssh_opts() {
    echo -F /dev/null -i "$CLIENT_KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=3 \
        -o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o LogLevel=ERROR
}

check_host_number() {
    [[ "$1" =~ ^[1-9][0-9]*$ ]] && [ "$1" -le "$MAX_HOSTS" ] || die "no hypervisor '$1' (1..$MAX_HOSTS)"
}

# The PID in FILE if that process is alive and its command name is COMM, else nothing.
pid_of() {
    local file="$1" comm="$2" pid
    [ -s "$file" ] || return 1
    pid="$(tr -dc 0-9 <"$file")"
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
    echo "$pid"
}

ns_inode() { stat -L -c %i "$1" 2>/dev/null; }

# The holder's PID if it is alive and sits in the host's network namespace.
holder_pid() {
    local n="$1" pid
    pid="$(pid_of "$(hv_dir "$n")/holder.pid" sleep)" || return 1
    [ -e "/run/netns/$(ns_name "$n")" ] || return 1
    [ "$(ns_inode "/proc/$pid/ns/net")" = "$(ns_inode "/run/netns/$(ns_name "$n")")" ] || return 1
    echo "$pid"
}

in_host() {   # in_host N CMD...: run CMD in host N's namespaces
    local n="$1" pid
    shift
    pid="$(holder_pid "$n")" || die "hypervisor $n is not running (scripts/hypervisor.sh start $n)"
    nsenter -t "$pid" -n -m -u -- "${CLEAN_ENV[@]}" "$@"
}

healthy() {
    local n="$1" d
    d="$(hv_dir "$n")"
    holder_pid "$n" >/dev/null &&
        pid_of "$d/virtlogd.pid" virtlogd >/dev/null &&
        pid_of "$d/libvirtd.pid" libvirtd >/dev/null &&
        pid_of "$d/ssh/sshd.pid" sshd >/dev/null &&
        ip link show "$(veth_root "$n")" >/dev/null 2>&1 &&
        [ "$(cat "$OWNER_DIR/hv$n" 2>/dev/null)" = "$LIFEBOAT_RUN_DIR" ]
}

running_hosts() {
    local n out=()
    for n in $(seq "$MAX_HOSTS"); do healthy "$n" && out+=("$n"); done
    echo "${out[*]}"
}

# Serialises commands that change hosts' state; children must not inherit the lock (9>&-).
take_lock() {
    mkdir -p "$LIFEBOAT_RUN_DIR"
    exec 9>"$LIFEBOAT_RUN_DIR/hypervisor.lock"
    flock -w 300 9 || die "another scripts/hypervisor.sh holds $LIFEBOAT_RUN_DIR/hypervisor.lock"
}

# --- SSH keys ----------------------------------------------------------------------------------

# Creates a client key only when absent: generated aside, then hard-linked into place (atomic,
# never overwrites), so a concurrent creator (another script) wins or loses cleanly.
ensure_client_key() {
    local type="$1" key="$SSH_DIR/id_$1" tmp
    mkdir -p "$SSH_DIR"
    chmod 700 "$SSH_DIR"
    if [ ! -e "$key" ]; then
        tmp="$(mktemp -d "$SSH_DIR/.keygen.XXXXXX")"
        ssh-keygen -q -t "$type" -N '' -C "lifeboat-test" -f "$tmp/key" >/dev/null
        if ln "$tmp/key" "$key" 2>/dev/null; then mv -f "$tmp/key.pub" "$key.pub"; fi
        rm -rf "$tmp"
    fi
    if [ ! -s "$key.pub" ]; then
        sleep 0.2   # a concurrent creator may be about to move its .pub in
        [ -s "$key.pub" ] || { ssh-keygen -y -f "$key" >"$key.pub.$$" && mv -f "$key.pub.$$" "$key.pub"; }
    fi
}

# Known_hosts holds exactly one line per running host's address: its current key.
known_hosts_set() {   # known_hosts_set ADDRESS [KEYFILE.pub]  (no key: just remove)
    local addr="$1" pub="${2:-}"
    mkdir -p "$SSH_DIR"
    (
        flock -w 30 8 || die "cannot lock $KNOWN_HOSTS"
        touch "$KNOWN_HOSTS"
        {
            awk -v a="$addr" '{ n = split($1, h, ","); for (i = 1; i <= n; i++) if (h[i] == a || h[i] == "[" a "]:22") next; print }' "$KNOWN_HOSTS"
            [ -z "$pub" ] || awk -v a="$addr" '{ print a, $1, $2 }' "$pub"
        } >"$KNOWN_HOSTS.tmp.$$"
        if cmp -s "$KNOWN_HOSTS.tmp.$$" "$KNOWN_HOSTS"; then rm -f "$KNOWN_HOSTS.tmp.$$"
        else mv -f "$KNOWN_HOSTS.tmp.$$" "$KNOWN_HOSTS"; fi
    ) 8>"$SSH_DIR/.known_hosts.lock"
}

write_ssh_config() {
    local n="$1" d
    d="$(hv_dir "$n")"
    mkdir -p "$d/ssh"
    [ -s "$d/ssh/ssh_host_ed25519_key" ] ||
        ssh-keygen -q -t ed25519 -N '' -C "root@$(ns_name "$n")" -f "$d/ssh/ssh_host_ed25519_key" >/dev/null
    cat "$CLIENT_KEY.pub" "$SSH_DIR/id_rsa.pub" >"$d/ssh/authorized_keys"
    cat >"$d/ssh/sshd_config" <<CONF
# sshd of hypervisor stand-in $n (written by scripts/hypervisor.sh)
ListenAddress $(address "$n"):22
HostKey $d/ssh/ssh_host_ed25519_key
PidFile $d/ssh/sshd.pid
AuthorizedKeysFile $d/ssh/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
# libssh2 1.10 (Lifeboat's client) signs with RSA only as SHA-1 "ssh-rsa", which OpenSSH 8.8+
# refuses by default: allowed here so that id_rsa works at all. The host key is ed25519 only.
PubkeyAcceptedAlgorithms +ssh-rsa
LogLevel VERBOSE
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxStartups 100
MaxSessions 100
ClientAliveInterval 0
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
}

# --- start / stop --------------------------------------------------------------------------------

# Puts LINES at the end of a libvirt config file, replacing what an earlier start put there.
set_conf() {
    local file="$1"
    shift
    sed -i '/^# BEGIN lifeboat hypervisor stand-in/,/^# END lifeboat hypervisor stand-in/d' "$file"
    { echo "# BEGIN lifeboat hypervisor stand-in (scripts/hypervisor.sh)"; printf '%s\n' "$@"
      echo "# END lifeboat hypervisor stand-in"; } >>"$file"
}

# First use of hvN's directories: private copies of what libvirt keeps per host.
prepare_dirs() {
    local n="$1" d
    d="$(hv_dir "$n")"
    mkdir -p "$d"
    if [ ! -d "$d/etc-libvirt" ]; then
        rm -rf "$d/etc-libvirt.tmp"
        cp -a /etc/libvirt "$d/etc-libvirt.tmp"
        # No domains or networks of the machine's own, and no default network (virbr0, dnsmasq).
        find "$d/etc-libvirt.tmp/qemu" -mindepth 1 -maxdepth 1 -name '*.xml' -delete
        rm -rf "$d/etc-libvirt.tmp/qemu/autostart" "$d/etc-libvirt.tmp/qemu/networks/autostart"/*
        rm -f "$d/etc-libvirt.tmp/qemu/networks/default.xml"
        mv "$d/etc-libvirt.tmp" "$d/etc-libvirt"
    fi
    set_conf "$d/etc-libvirt/libvirtd.conf" 'log_outputs="3:file:/var/log/libvirt/libvirtd.log"'
    # Several libvirtds share this machine's cgroup tree, where domains with the same name and
    # ID on two hosts would collide. A per-domain /dev would trip over the file mounted on
    # /dev/kvm (libvirt cannot move file mounts into it).
    set_conf "$d/etc-libvirt/qemu.conf" 'cgroup_controllers = [ ]' 'namespaces = [ ]'
    if [ ! -d "$d/var-lib-libvirt" ]; then
        install -d -m 755 "$d/var-lib-libvirt.tmp"
        install -d -m 711 "$d/var-lib-libvirt.tmp/images" "$d/var-lib-libvirt.tmp/boot"
        install -d -m 750 -o libvirt-qemu -g libvirt-qemu "$d/var-lib-libvirt.tmp/qemu" \
            "$d/var-lib-libvirt.tmp/qemu/channel" "$d/var-lib-libvirt.tmp/qemu/channel/target"
        install -d -m 700 "$d/var-lib-libvirt.tmp/sanlock"
        mv "$d/var-lib-libvirt.tmp" "$d/var-lib-libvirt"
    fi
    install -d -m 755 "$d/var-log-libvirt" "$d/var-log-libvirt/qemu" "$d/var-lib-nova"
    # Runtime state does not survive a stop (like a reboot): domains defined stay, none runs.
    rm -rf "$d/run-libvirt" "$d/run-sshd"
    install -d -m 755 "$d/run-libvirt"
    install -d -m 755 "$d/run-sshd"
    printf '127.0.0.1\tlocalhost\n%s\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        "$(address "$n")" "$(ns_name "$n")" >"$d/hosts"
    # /dev/kvm here is root's alone: a QEMU probe finds KVM, libvirt's access check for the
    # qemu user does not, so every lookup would call the cache stale and re-probe QEMU (~4 s on
    # each `virsh version` or domain start). Inside a host it is an empty file: plain TCG.
    [ -e "$d/no-kvm" ] || install -m 600 /dev/null "$d/no-kvm"
    install -d -m 711 "$CAPS_CACHE" "$CAPS_CACHE/qemu"
    # Mount points the bind mounts need on this side.
    mkdir -p /run/libvirt /run/sshd /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /var/lib/nova "$OWNER_DIR"
}

setup_network() {
    local n="$1" ns veth addr
    ns="$(ns_name "$n")" veth="$(veth_root "$n")" addr="$(address "$n")"
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    # IPv4 only: no router solicitations or DAD on the link.
    echo 1 >"/proc/sys/net/ipv6/conf/$veth/disable_ipv6"
    nsenter --net="/run/netns/$ns" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6'
    ip addr add "$ROOT_ADDRESS/32" dev "$veth"
    ip link set "$veth" up
    ip route replace "$addr/32" dev "$veth" src "$ROOT_ADDRESS"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/32" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace "$ROOT_ADDRESS/32" dev eth0 src "$addr"
}

# Runs as the holder, inside the host's network namespace and a fresh mount + UTS namespace.
holder_main() {
    local n="$1" d
    d="$(hv_dir "$n")"
    hostname "$(ns_name "$n")"
    mount --make-rprivate /
    mount --bind "$d/run-libvirt" /run/libvirt
    mount --bind "$d/etc-libvirt" /etc/libvirt
    mount --bind "$d/var-lib-libvirt" /var/lib/libvirt
    mount --bind "$d/var-log-libvirt" /var/log/libvirt
    mount --bind "$d/var-lib-nova" /var/lib/nova
    mount --bind "$d/hosts" /etc/hosts
    mount --bind "$d/run-sshd" /run/sshd
    mount --bind "$CAPS_CACHE" /var/cache/libvirt
    [ ! -e /dev/kvm ] || mount --bind "$d/no-kvm" /dev/kvm
    echo $$ >"$d/holder.pid.tmp"
    mv "$d/holder.pid.tmp" "$d/holder.pid"
    exec sleep infinity
}

# Launches host N's namespaces and daemons; start_hosts waits for them.
launch_host() {
    local n="$1" d ns pid
    d="$(hv_dir "$n")" ns="$(ns_name "$n")"
    cleanup_host "$n" quiet
    prepare_dirs "$n"
    write_ssh_config "$n"
    setup_network "$n"
    echo "$LIFEBOAT_RUN_DIR" >"$OWNER_DIR/hv$n"
    rm -f "$d/holder.pid"
    setsid ip netns exec "$ns" unshare -m -u --propagation private -- "$SELF" __holder "$n" \
        </dev/null >>"$d/holder.log" 2>&1 9>&- &
    for _ in $(seq 500); do
        pid="$(holder_pid "$n")" && break
        sleep 0.01
    done
    [ -n "${pid:-}" ] || { cat "$d/holder.log" >&2; die "hypervisor $n: the namespace holder did not start"; }
    echo "$(ns_inode "/proc/$pid/ns/net") $(ns_inode "/proc/$pid/ns/mnt")" >"$d/ns.ids"
    nsenter -t "$pid" -n -m -u -- "${CLEAN_ENV[@]}" /usr/sbin/virtlogd -d -p "$d/virtlogd.pid" \
        </dev/null >>"$d/daemons.log" 2>&1 9>&- || die "hypervisor $n: virtlogd did not start"
    nsenter -t "$pid" -n -m -u -- "${CLEAN_ENV[@]}" /usr/sbin/sshd -f "$d/ssh/sshd_config" -E "$d/ssh/sshd.log" \
        </dev/null >>"$d/daemons.log" 2>&1 9>&- || die "hypervisor $n: sshd did not start (see $d/ssh/sshd.log)"
    known_hosts_set "$(address "$n")" "$d/ssh/ssh_host_ed25519_key.pub"
}

start_libvirtd() {
    local n="$1" d pid
    d="$(hv_dir "$n")"
    pid="$(holder_pid "$n")"
    nsenter -t "$pid" -n -m -u -- "${CLEAN_ENV[@]}" /usr/sbin/libvirtd -d -p "$d/libvirtd.pid" \
        </dev/null >>"$d/daemons.log" 2>&1 9>&- || die "hypervisor $n: libvirtd did not start"
}

libvirtd_answers() { in_host "$1" timeout 10 virsh -q -c qemu:///system version >/dev/null 2>&1; }
ssh_works() { timeout 10 ssh $(ssh_opts) "root@$(address "$1")" true </dev/null >/dev/null 2>&1; }

# Waits until host N answers on libvirt and on SSH.
wait_one() {
    local n="$1" d deadline=$((SECONDS + 90))
    d="$(hv_dir "$n")"
    until libvirtd_answers "$n" && ssh_works "$n"; do
        if ! pid_of "$d/libvirtd.pid" libvirtd >/dev/null && [ -s "$d/libvirtd.pid" ]; then
            tail -20 "$d/var-log-libvirt/libvirtd.log" >&2 2>/dev/null || true
            echo "hypervisor $n: libvirtd exited" >&2
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -5 "$d/var-log-libvirt/libvirtd.log" "$d/ssh/sshd.log" "$d/daemons.log" >&2 2>/dev/null || true
            libvirtd_answers "$n" || echo "hypervisor $n: libvirtd does not answer" >&2
            ssh_works "$n" || echo "hypervisor $n: ssh root@$(address "$n") fails" >&2
            return 1
        fi
        sleep 0.05
    done
}

# Waits for every host in $@ at once.
wait_ready() {
    local n pids=() failed=() i=0
    for n in "$@"; do wait_one "$n" & pids+=($!); done
    for n in "$@"; do wait "${pids[$i]}" || failed+=("$n"); i=$((i + 1)); done
    [ ${#failed[@]} -eq 0 ] || die "hypervisor(s) ${failed[*]} did not come up"
}

start_hosts() {
    local hosts=("$@") n todo=() up=() checks=() owner
    [ ${#hosts[@]} -gt 0 ] || hosts=(1 2)
    for n in "${hosts[@]}"; do check_host_number "$n"; done
    apt_install "${PACKAGES[@]}"
    take_lock
    ensure_client_key ed25519
    ensure_client_key rsa
    for n in "${hosts[@]}"; do
        owner="$(cat "$OWNER_DIR/hv$n" 2>/dev/null || true)"
        if [ -n "$owner" ] && [ "$owner" != "$LIFEBOAT_RUN_DIR" ] && [ -e "/run/netns/$(ns_name "$n")" ] &&
            pid_of "$owner/hv$n/holder.pid" sleep >/dev/null; then
            die "hypervisor $n runs for LIFEBOAT_RUN_DIR=$owner: stop it there first"
        fi
        [[ " ${todo[*]} ${up[*]} " == *" $n "* ]] && continue
        if healthy "$n"; then
            # Running: make sure it is usable (link up, known_hosts current), else start afresh.
            link_set up "$n"
            write_ssh_config "$n"
            known_hosts_set "$(address "$n")" "$(hv_dir "$n")/ssh/ssh_host_ed25519_key.pub"
            (libvirtd_answers "$n" && ssh_works "$n") & checks+=($!)
            up+=("$n")
        else
            todo+=("$n")
        fi
    done
    local i=0
    for n in "${up[@]+"${up[@]}"}"; do
        if ! wait "${checks[$i]}"; then
            log "hypervisor $n does not answer: restarting it"
            todo+=("$n")
        fi
        i=$((i + 1))
    done
    [ ${#todo[@]} -gt 0 ] || return 0
    log "starting hypervisor(s) ${todo[*]}"
    for n in "${todo[@]}"; do launch_host "$n"; done
    # The very first libvirtd on a machine probes QEMU's capabilities (~10 s) into a cache that
    # all hosts share: let one fill it before the others start.
    local first="${todo[0]}" rest=("${todo[@]:1}")
    start_libvirtd "$first"
    if ! ls "$CAPS_CACHE"/qemu/capabilities/*.xml >/dev/null 2>&1; then
        log "first hypervisor on this machine: libvirtd probes QEMU (~5 s, once)"
        wait_ready "$first"
    fi
    for n in "${rest[@]+"${rest[@]}"}"; do start_libvirtd "$n"; done
    wait_ready "${todo[@]}"
}

# Alive and not a zombie.
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# Kills PIDs (TERM, then KILL after 3 s) and waits until they are dead; remembers them in KILLED.
KILLED=()
kill_and_wait() {
    local pids=("$@") pid left i
    [ ${#pids[@]} -gt 0 ] || return 0
    KILLED+=("${pids[@]}")
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for i in $(seq 250); do
        left=()
        for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
        [ ${#left[@]} -eq 0 ] && return 0
        [ "$i" -ne 150 ] || kill -KILL "${left[@]}" 2>/dev/null || true
        sleep 0.02
    done
    echo "warning: processes still alive: ${left[*]}" >&2
}

# Waits (up to 5 s) until the zombies of KILLED are gone too: the daemons are orphans, and PID 1
# here reaps only every ~2 s; `stop` promises that nothing is left behind.
wait_reaped() {
    local pid
    for _ in $(seq 250); do
        for pid in "${KILLED[@]+"${KILLED[@]}"}"; do [ -e "/proc/$pid" ] && break; pid=""; done
        [ -z "${pid:-}" ] && return 0
        sleep 0.02
    done
}

# Every process of host N: those in its network namespace, or (netns already gone) those still
# in the namespaces recorded at its start that run one of the programs it starts.
host_pids() {
    local n="$1" d ns net="" mnt="" link pid
    d="$(hv_dir "$n")" ns="$(ns_name "$n")"
    if [ -e "/run/netns/$ns" ]; then
        ip netns pids "$ns" 2>/dev/null || true
        return 0
    fi
    [ -s "$d/ns.ids" ] && read -r net mnt <"$d/ns.ids"
    [ -n "$net" ] || return 0
    find /proc/[0-9]*/ns -maxdepth 1 \( -lname "net:\[$net\]" -o -lname "mnt:\[$mnt\]" \) 2>/dev/null |
        while read -r link; do
            pid="${link#/proc/}" pid="${pid%%/*}"
            case "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" in
                sleep | libvirtd | virtlogd | sshd | qemu-system-* | bash | sh | dash | virsh | qemu-img | dd | cat | sftp-server) echo "$pid" ;;
            esac
        done
}

cleanup_host() {
    local n="$1" quiet="${2:-}" d ns veth pid dom pids f
    KILLED=()
    d="$(hv_dir "$n")" ns="$(ns_name "$n")" veth="$(veth_root "$n")"
    if [ ! -e "/run/netns/$ns" ] && ! ip link show "$veth" >/dev/null 2>&1 && [ ! -s "$d/ns.ids" ]; then
        rm -f "$OWNER_DIR/hv$n"
        return 0
    fi
    [ -n "$quiet" ] && log "hypervisor $n: cleaning up stale state" || log "stopping hypervisor $n"
    # Power off the VMs through libvirt while it answers (it cleans up after itself then).
    pids=()
    if holder_pid "$n" >/dev/null && pid_of "$d/libvirtd.pid" libvirtd >/dev/null; then
        for dom in $(in_host "$n" timeout 10 virsh -q list --name 2>/dev/null || true); do
            in_host "$n" timeout 20 virsh -q destroy "$dom" >/dev/null 2>&1 &
            pids+=($!)
        done
        for pid in "${pids[@]+"${pids[@]}"}"; do wait "$pid" || true; done
    fi
    pids=()
    for f in ssh/sshd.pid:sshd libvirtd.pid:libvirtd virtlogd.pid:virtlogd; do
        pid="$(pid_of "$d/${f%%:*}" "${f##*:}")" && pids+=("$pid")
    done
    kill_and_wait "${pids[@]+"${pids[@]}"}"
    # Whatever is left: QEMUs of a crashed libvirtd, SSH sessions, the holder.
    mapfile -t pids < <(host_pids "$n" | sort -u)
    kill_and_wait "${pids[@]+"${pids[@]}"}"
    ip link del "$veth" 2>/dev/null || true
    [ -e "/run/netns/$ns" ] && { ip netns del "$ns" 2>/dev/null || umount -l "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
    wait_reaped
    rm -f "$d/holder.pid" "$d/libvirtd.pid" "$d/virtlogd.pid" "$d/ssh/sshd.pid" "$d/ns.ids" "$OWNER_DIR/hv$n"
    rm -rf "$d/run-libvirt" "$d/run-sshd"
    # `ip netns add` made /run/netns a mount point of its own: gone with the last namespace.
    if [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ] && mountpoint -q /run/netns; then
        umount /run/netns 2>/dev/null && rmdir /run/netns 2>/dev/null || true
    fi
    rmdir "$OWNER_DIR" 2>/dev/null || true
}

stop_hosts() {
    local hosts=("$@") n pids=() pid failed=""
    [ ${#hosts[@]} -gt 0 ] || die "usage: $0 stop N...|all"
    [ "${hosts[*]}" = all ] && mapfile -t hosts < <(seq "$MAX_HOSTS")
    for n in "${hosts[@]}"; do check_host_number "$n"; done
    take_lock
    for n in "${hosts[@]}"; do
        local owner
        owner="$(cat "$OWNER_DIR/hv$n" 2>/dev/null || true)"
        if [ -n "$owner" ] && [ "$owner" != "$LIFEBOAT_RUN_DIR" ] && pid_of "$owner/hv$n/holder.pid" sleep >/dev/null; then
            echo "hypervisor $n belongs to LIFEBOAT_RUN_DIR=$owner: left alone" >&2
            continue
        fi
        cleanup_host "$n" &
        pids+=($!)
    done
    for pid in "${pids[@]+"${pids[@]}"}"; do wait "$pid" || failed=1; done
    [ -z "$failed" ] || die "stop failed"
}

# --- VMs -----------------------------------------------------------------------------------------

domain_xml() {   # domain_xml NAME FORMAT PATH
    cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>$VM_MEMORY_MIB</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='$2'/>
      <source file='$3'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='pty'/>
    <console type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# An element's text (EXPR ending in /text()) or an attribute's value, from the domain's XML.
xpath() {   # xpath N DOMAIN EXPR [--inactive]
    { in_host "$1" virsh -q dumpxml ${4:-} --xpath "$3" "$2" 2>/dev/null || true; } |
        sed -E 's/^ *[A-Za-z_:-]+="(.*)"$/\1/'
}

vm_cmd() {
    local n="${1:-}" dom="${2:-}" format="${3:-}" size="${4:-}" start=1 replace="" arg
    [ $# -ge 4 ] || die "usage: $0 vm N DOMAIN raw|qcow2 SIZE_MIB [--no-start] [--replace]"
    shift 4
    for arg in "$@"; do
        case "$arg" in
            --no-start) start="" ;;
            --replace) replace=1 ;;
            *) die "vm: unknown option $arg" ;;
        esac
    done
    check_host_number "$n"
    [[ "$dom" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "vm: bad domain name '$dom'"
    [[ "$format" =~ ^(raw|qcow2)$ ]] || die "vm: format must be raw or qcow2, not '$format'"
    [[ "$size" =~ ^[1-9][0-9]*$ ]] || die "vm: size must be a number of MiB, not '$size'"
    healthy "$n" || die "hypervisor $n is not running (scripts/hypervisor.sh start $n)"
    local path="/var/lib/libvirt/images/$dom-vda.$format" outside
    outside="$(images_dir "$n")/$dom-vda.$format"

    if in_host "$n" virsh -q dominfo "$dom" >/dev/null 2>&1; then
        if [ -n "$replace" ]; then
            remove_domain "$n" "$dom"
        else
            local why="" vda="/domain/devices/disk[target/@dev='vda']"
            [ "$(xpath "$n" "$dom" /domain/@type --inactive)" = qemu ] || why="${why}, not a TCG domain"
            [ "$(xpath "$n" "$dom" "$vda/source/@file" --inactive)" = "$path" ] || why="${why}, vda is not $path"
            [ "$(xpath "$n" "$dom" "$vda/driver/@type" --inactive)" = "$format" ] || why="${why}, vda is not $format"
            [ "$(xpath "$n" "$dom" '/domain/memory/text()' --inactive)" = $((VM_MEMORY_MIB * 1024)) ] || why="${why}, memory differs"
            [ "$(qemu-img info -U --output=json "$outside" 2>/dev/null | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p' | head -1)" = $((size * 1048576)) ] ||
                why="${why}, disk size differs"
            [ -z "$why" ] || die "domain $dom exists on hypervisor $n and differs (${why#, }): use --replace"
            if [ -n "$start" ] && [ "$(in_host "$n" virsh -q domstate "$dom")" != running ]; then
                in_host "$n" virsh -q start "$dom" >/dev/null
            fi
            echo "$outside"
            return 0
        fi
    elif [ -e "$outside" ]; then
        [ -n "$replace" ] || die "$outside exists but no domain $dom: use --replace"
    fi
    rm -f "$outside"
    if [ "$format" = raw ]; then
        truncate -s "${size}M" "$outside"
    else
        qemu-img create -q -f qcow2 "$outside" "${size}M"
    fi
    domain_xml "$dom" "$format" "$path" >"$(hv_dir "$n")/$dom.xml.tmp"
    in_host "$n" virsh -q define "$(hv_dir "$n")/$dom.xml.tmp" >/dev/null ||
        { rm -f "$(hv_dir "$n")/$dom.xml.tmp"; die "vm: virsh define failed"; }
    rm -f "$(hv_dir "$n")/$dom.xml.tmp"
    [ -z "$start" ] || in_host "$n" virsh -q start "$dom" >/dev/null || die "vm: virsh start $dom failed"
    echo "$outside"
}

# Destroys and undefines DOMAIN on host N, and deletes every disk file its definitions name.
remove_domain() {
    local n="$1" dom="$2" files f
    files="$( { in_host "$n" virsh -q dumpxml "$dom"; in_host "$n" virsh -q dumpxml --inactive "$dom"; } 2>/dev/null |
        sed -n "s/.*<source file='\([^']*\)'.*/\1/p" | sort -u)"
    in_host "$n" virsh -q destroy "$dom" >/dev/null 2>&1 || true
    in_host "$n" virsh -q undefine "$dom" --snapshots-metadata --checkpoints-metadata --nvram >/dev/null 2>&1 ||
        in_host "$n" virsh -q undefine "$dom" >/dev/null || die "cannot undefine $dom on hypervisor $n"
    for f in $files; do
        case "$f" in /var/lib/libvirt/images/*) rm -f "$(images_dir "$n")/${f#/var/lib/libvirt/images/}" ;; esac
    done
}

guest_write() {
    [ $# -eq 5 ] || die "usage: $0 guest-write N DOMAIN OFFSET LENGTH BYTE"
    local n="$1" dom="$2" offset="$3" length="$4" byte="$5" alias state logf size out new i
    check_host_number "$n"
    [[ "$offset" =~ ^[0-9]+[kKmMgGtT]?$ ]] || die "guest-write: bad offset '$offset' (bytes or K/M/G/T)"
    [[ "$length" =~ ^[1-9][0-9]*[kKmMgGtT]?$ ]] || die "guest-write: bad length '$length' (bytes or K/M/G/T)"
    [[ "$byte" =~ ^(0[xX][0-9a-fA-F]{1,2}|[0-9]{1,3})$ ]] && [ $((byte)) -le 255 ] || die "guest-write: bad byte '$byte'"
    state="$(in_host "$n" virsh -q domstate "$dom" 2>/dev/null)" || die "no domain $dom on hypervisor $n"
    [[ "$state" == running || "$state" == paused ]] || die "domain $dom on hypervisor $n is $state, not running"
    alias="$(xpath "$n" "$dom" "/domain/devices/disk[target/@dev='vda']/alias/@name")"
    [ -n "$alias" ] || die "domain $dom has no vda"
    # qemu-io prints into the domain's QEMU log, not back through the monitor: read what it adds.
    logf="$(hv_dir "$n")/var-log-libvirt/qemu/$dom.log"
    size="$(stat -c %s "$logf" 2>/dev/null || echo 0)"
    out="$(in_host "$n" virsh qemu-monitor-command "$dom" --hmp \
        "qemu-io -d /machine/peripheral/$alias/virtio-backend \"write -P $byte $offset $length\"" 2>&1)" ||
        die "guest-write: $out"
    [ -z "$(tr -d '[:space:]' <<<"$out")" ] || die "guest-write: $out"
    # Flush: QEMU keeps qcow2 metadata (new L2 entries) in memory until then.
    out="$(in_host "$n" virsh qemu-monitor-command "$dom" --hmp \
        "qemu-io -d /machine/peripheral/$alias/virtio-backend flush" 2>&1)" || die "guest-write: flush: $out"
    [ -z "$(tr -d '[:space:]' <<<"$out")" ] || die "guest-write: flush: $out"
    for i in $(seq 100); do
        new="$(tail -c +"$((size + 1))" "$logf" 2>/dev/null || true)"
        if grep -qiE 'fail|error|invalid|not found|No such' <<<"$new"; then
            die "guest-write into $dom failed: $(grep -iE 'fail|error|invalid|not found|No such' <<<"$new" | head -3)"
        fi
        grep -qE '^wrote [0-9]+/[0-9]+ bytes' <<<"$new" && return 0
        sleep 0.02
    done
    die "guest-write: no confirmation in $logf"
}

# --- faults --------------------------------------------------------------------------------------

# Down: the host's own NIC goes down, so packets from here vanish silently (a cut cable, not
# a refusal). Routes through a device that went down are dropped: up puts them back.
link_set() {
    local state="$1" n="$2" ns
    ns="$(ns_name "$n")"
    [ -e "/run/netns/$ns" ] || die "hypervisor $n is not running"
    if [ "$state" = down ]; then
        ip -n "$ns" link set eth0 down
    else
        ip -n "$ns" link set eth0 up
        ip link set "$(veth_root "$n")" up
        ip -n "$ns" route replace "$ROOT_ADDRESS/32" dev eth0 src "$(address "$n")"
        ip route replace "$(address "$n")/32" dev "$(veth_root "$n")" src "$ROOT_ADDRESS"
        # Neighbour entries that failed while the link was down would say "no route to host".
        ip neigh flush dev "$(veth_root "$n")" 2>/dev/null || true
        ip -n "$ns" neigh flush dev eth0 2>/dev/null || true
        local i
        for i in $(seq 100); do
            timeout 1 bash -c "exec 3<>/dev/tcp/$(address "$n")/22" 2>/dev/null && return 0
            sleep 0.05
        done
        die "hypervisor $n: link up, but port 22 does not answer"
    fi
}

rekey() {
    local n="$1" d pid key
    check_host_number "$n"
    healthy "$n" || die "hypervisor $n is not running"
    take_lock
    d="$(hv_dir "$n")"
    rm -f "$d/ssh/ssh_host_ed25519_key.new" "$d/ssh/ssh_host_ed25519_key.new.pub"
    ssh-keygen -q -t ed25519 -N '' -C "root@$(ns_name "$n")" -f "$d/ssh/ssh_host_ed25519_key.new" >/dev/null
    mv -f "$d/ssh/ssh_host_ed25519_key.new.pub" "$d/ssh/ssh_host_ed25519_key.pub"
    mv -f "$d/ssh/ssh_host_ed25519_key.new" "$d/ssh/ssh_host_ed25519_key"
    # sshd re-executes itself on SIGHUP (same PID), reading its host key anew.
    pid="$(pid_of "$d/ssh/sshd.pid" sshd)"
    kill -HUP "$pid"
    key="$(awk '{ print $2 }' "$d/ssh/ssh_host_ed25519_key.pub")"
    for _ in $(seq 100); do
        ssh-keyscan -T 2 -t ed25519 "$(address "$n")" 2>/dev/null | grep -qF "$key" && return 0
        sleep 0.05
    done
    die "hypervisor $n: sshd does not serve its new key"
}

# --- reporting -----------------------------------------------------------------------------------

status() {
    local n d any="" link
    for n in $(seq "$MAX_HOSTS"); do
        d="$(hv_dir "$n")"
        if healthy "$n"; then
            link="$(ip -n "$(ns_name "$n")" -br link show eth0 2>/dev/null | awk '{ print $2 }')"
            printf 'hv%s  running  %s  link %s  holder %s  vms: %s\n' "$n" "$(address "$n")" "${link:-?}" \
                "$(holder_pid "$n")" "$(in_host "$n" virsh -q list --all --name 2>/dev/null | paste -sd, -)"
            any=1
        elif [ -e "/run/netns/$(ns_name "$n")" ] || [ -s "$d/ns.ids" ]; then
            printf 'hv%s  BROKEN (stale state; `start %s` or `stop %s` cleans it)\n' "$n" "$n" "$n"
            any=1
        elif [ -d "$d" ]; then
            printf 'hv%s  stopped  (state in %s)\n' "$n" "$d"
        fi
    done
    [ -n "$any" ] || { echo "no hypervisor running"; return 1; }
}

print_env() {
    local hosts n
    hosts="$(running_hosts)"
    echo "export LIFEBOAT_TEST_HYPERVISORS=\"$hosts\""
    for n in $hosts; do
        echo "export LIFEBOAT_TEST_HV${n}_ADDRESS=$(address "$n")"
        echo "export LIFEBOAT_TEST_HV${n}_IMAGES=$(images_dir "$n")"
    done
    echo "export LIFEBOAT_TEST_SSH_KEY=$CLIENT_KEY"
    echo "export LIFEBOAT_TEST_SSH_RSA_KEY=$SSH_DIR/id_rsa"
    echo "export LIFEBOAT_TEST_KNOWN_HOSTS=$KNOWN_HOSTS"
    echo "export LIFEBOAT_TEST_HV_CTL=$LIFEBOAT_ROOT/scripts/hypervisor.sh"
}

usage() {
    sed -n '/^#   scripts/s/^#   //p' "$SELF" >&2
    exit 2
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    start) start_hosts "$@" ;;
    stop) stop_hosts "$@" ;;
    reset)
        stop_hosts all
        for n in $(seq "$MAX_HOSTS"); do
            known_hosts_set "$(address "$n")"
            rm -rf "$(hv_dir "$n")"
        done
        ;;
    status) status ;;
    env) print_env ;;
    vm) vm_cmd "$@" ;;
    guest-write) guest_write "$@" ;;
    virsh) [ $# -ge 1 ] || usage; n="$1"; shift; check_host_number "$n"; in_host "$n" virsh "$@" ;;
    exec) [ $# -ge 2 ] || usage; n="$1"; shift; check_host_number "$n"; in_host "$n" "$@" ;;
    link)
        [ $# -eq 2 ] && [[ "$1" =~ ^(up|down)$ ]] || die "usage: $0 link down|up N"
        check_host_number "$2"
        link_set "$1" "$2"
        ;;
    rekey) [ $# -eq 1 ] || usage; rekey "$1" ;;
    __holder) holder_main "$@" ;;
    *) usage ;;
esac
