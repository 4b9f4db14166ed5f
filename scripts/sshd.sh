#!/usr/bin/env bash
# An OpenSSH server of Lifeboat's own on loopback, for the SSH client's tests: own port, host
# keys, config and authorized keys, so it never touches the sshd (or the users) the machine has.
#
#   scripts/sshd.sh start|stop|restart|status|env
#
# It listens on 127.0.0.1:$LIFEBOAT_SSHD_PORT (default 2299). It runs in a mount namespace of
# its own (unshare -m) where /etc/passwd, /etc/shadow and /etc/group are bind-mounted copies
# that add the user `lifeboat-test` with a random password ($DIR/password): the machine's real
# user database is never changed. Client keys live in $LIFEBOAT_RUN_DIR/ssh (id_ed25519,
# id_rsa, and id_ed25519_protected whose passphrase is in `passphrase` beside it); all are
# authorized for root and lifeboat-test. $DIR/known_hosts holds the server's ed25519 key.
# `env` prints the variables the tests read.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

PORT="${LIFEBOAT_SSHD_PORT:-2299}"
DIR="$LIFEBOAT_RUN_DIR/sshd"
KEYS="$LIFEBOAT_RUN_DIR/ssh"
TEST_USER=lifeboat-test
SSHD=/usr/sbin/sshd  # sshd re-executes itself: it must be started by its absolute path

# A random secret of letters and digits (no shell or sed metacharacters).
random_secret() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24; }

make_keys() {
    mkdir -p "$DIR" "$KEYS"
    chmod 700 "$KEYS"
    local type
    for type in ed25519 rsa; do
        [ -f "$DIR/ssh_host_${type}_key" ] || ssh-keygen -q -t "$type" -N '' -C "lifeboat-test-sshd" -f "$DIR/ssh_host_${type}_key"
        [ -f "$KEYS/id_$type" ] || ssh-keygen -q -t "$type" -N '' -C "lifeboat-test-$type" -f "$KEYS/id_$type"
    done
    if [ ! -f "$KEYS/id_ed25519_protected" ]; then
        (umask 077 && random_secret > "$KEYS/passphrase")
        ssh-keygen -q -t ed25519 -N "$(cat "$KEYS/passphrase")" -C "lifeboat-test-protected" -f "$KEYS/id_ed25519_protected"
    fi
    cat "$KEYS/id_ed25519.pub" "$KEYS/id_rsa.pub" "$KEYS/id_ed25519_protected.pub" > "$DIR/authorized_keys"
    # What a client that has seen this server once would have: its ed25519 key, OpenSSH's form
    # for a port other than 22.
    echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")" > "$DIR/known_hosts"
}

# Copies of the user database with the test user added, for the server's namespace only.
make_users() {
    mkdir -p "$DIR/etc" "$DIR/home/$TEST_USER"
    [ -f "$DIR/password" ] || (umask 077 && random_secret > "$DIR/password")
    chmod 600 "$DIR/password"
    local uid=62299
    while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do uid=$((uid + 1)); done
    local hash days
    hash="$(openssl passwd -6 -stdin < "$DIR/password")"
    days=$(($(date +%s) / 86400))
    grep -v "^$TEST_USER:" /etc/passwd > "$DIR/etc/passwd"
    echo "$TEST_USER:x:$uid:$uid:Lifeboat test user:$DIR/home/$TEST_USER:/bin/bash" >> "$DIR/etc/passwd"
    grep -v "^$TEST_USER:" /etc/group > "$DIR/etc/group"
    echo "$TEST_USER:x:$uid:" >> "$DIR/etc/group"
    grep -v "^$TEST_USER:" /etc/shadow > "$DIR/etc/shadow"
    echo "$TEST_USER:$hash:$days:0:99999:7:::" >> "$DIR/etc/shadow"
    chmod 644 "$DIR/etc/passwd" "$DIR/etc/group"
    chmod 640 "$DIR/etc/shadow"
    chown "$uid:$uid" "$DIR/home/$TEST_USER"
}

write_config() {
    cat > "$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/ssh_host_ed25519_key
HostKey $DIR/ssh_host_rsa_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
# libssh2 1.10 knows only the SHA-1 "ssh-rsa" signature, which OpenSSH 8.8+ no longer accepts
# by default: allowed here so that RSA keys (user and host) can be tested at all.
PubkeyAcceptedAlgorithms +ssh-rsa
HostKeyAlgorithms +ssh-rsa
MaxStartups 64:30:128
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
}

running() {
    [ -f "$DIR/sshd.pid" ] || return 1
    local pid; pid="$(cat "$DIR/sshd.pid")"
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ]
}

start() {
    if running; then return 0; fi
    command -v ssh-keygen >/dev/null && [ -x "$SSHD" ] || die "openssh-server is not installed"
    make_keys
    make_users
    write_config
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    "$SSHD" -t -f "$DIR/sshd_config" || die "the test sshd's configuration is invalid"
    log "starting sshd on 127.0.0.1:$PORT"
    # sshd forks into the background once it listens, so the port is open when this returns.
    unshare -m --propagation private bash -c '
        set -e
        for f in passwd group shadow; do mount --bind "$1/etc/$f" "/etc/$f"; done
        exec "$2" -f "$1/sshd_config" -E "$1/sshd.log"
    ' sshd-namespace "$DIR" "$SSHD"
    for _ in $(seq 50); do running && return 0; sleep 0.1; done
    tail -20 "$DIR/sshd.log" >&2 || true
    die "sshd did not start"
}

stop() {
    running || { rm -f "$DIR/sshd.pid"; return 0; }
    local pid; pid="$(cat "$DIR/sshd.pid")"
    log "stopping sshd on 127.0.0.1:$PORT"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/sshd.pid"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) running && echo "running" || { echo "stopped"; exit 1; } ;;
    env)
        echo "export LIFEBOAT_TEST_SSHD_HOST=127.0.0.1"
        echo "export LIFEBOAT_TEST_SSHD_PORT=$PORT"
        echo "export LIFEBOAT_TEST_SSHD_DIR=$DIR"
        echo "export LIFEBOAT_TEST_SSHD_USER=$TEST_USER"
        echo "export LIFEBOAT_TEST_SSH_KEYS=$KEYS"
        ;;
    *) echo "usage: $0 start|stop|restart|status|env" >&2; exit 2 ;;
esac
