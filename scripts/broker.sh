#!/usr/bin/env bash
# A RabbitMQ of Lifeboat's own on loopback: own node name, ports and data directory, so it
# never touches a broker the machine already runs. Used by the tests, the demo and benchmarks.
#
#   scripts/broker.sh start|stop|restart|status|env
#
# It listens on 127.0.0.1:$LIFEBOAT_BROKER_PORT (plain, default 5699) and
# localhost:$LIFEBOAT_BROKER_TLS_PORT (TLS, default 5698) with a CA made for it in
# $LIFEBOAT_RUN_DIR/broker/tls. `env` prints the variables the tests read.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

PORT="${LIFEBOAT_BROKER_PORT:-5699}"
TLS_PORT="${LIFEBOAT_BROKER_TLS_PORT:-5698}"
DIR="$LIFEBOAT_RUN_DIR/broker-$PORT"
NODE="lifeboat-$PORT@localhost"
export RABBITMQ_NODENAME="$NODE"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="$PORT"
export RABBITMQ_DIST_PORT="$((PORT + 20000))"
export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
export RABBITMQ_LOG_BASE="$DIR/log"
export RABBITMQ_PID_FILE="$DIR/rabbitmq.pid"
export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config"
# Debian's wrappers in /usr/sbin switch to the rabbitmq user and its home; the real scripts
# run as whoever calls them, with the Erlang cookie of this $HOME, all inside $DIR.
export HOME="$DIR/home"
# Erlang writes its crash dump into the working directory unless told otherwise.
export ERL_CRASH_DUMP="$DIR/log/erl_crash.dump"
RABBIT_BIN=/usr/lib/rabbitmq/bin

make_tls() {
    local tls="$DIR/tls"
    [ -f "$tls/server.pem" ] && return 0
    mkdir -p "$tls"
    (
        cd "$tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Lifeboat test CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost\n' > san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile san.ext -out server.pem 2>/dev/null
        # A CA that signed nothing here: a client trusting only it must refuse the broker.
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Some other CA" \
            -keyout other-ca.key -out other-ca.pem 2>/dev/null
        chmod 644 ./*.pem ./*.key
    )
}

write_config() {
    mkdir -p "$DIR/mnesia" "$DIR/log" "$DIR/home"
    make_tls
    cat > "$DIR/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$PORT
listeners.ssl.1 = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $DIR/tls/ca.pem
ssl_options.certfile = $DIR/tls/server.pem
ssl_options.keyfile = $DIR/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users = none
log.file.level = warning
CONF
    echo "[]." > "$DIR/enabled_plugins"
    echo "[]." > "$DIR/advanced.config"
}

ctl() { "$RABBIT_BIN/rabbitmqctl" -n "$NODE" "$@"; }

running() { ctl status >/dev/null 2>&1; }

start() {
    if running; then return 0; fi
    write_config
    log "starting RabbitMQ $NODE on 127.0.0.1:$PORT (TLS $TLS_PORT)"
    nohup "$RABBIT_BIN/rabbitmq-server" >"$DIR/log/server.out" 2>&1 &
    echo $! > "$DIR/server.pid"
    # await_startup gives up at once while the node is not yet registered with epmd: poll.
    local deadline=$((SECONDS + 120))
    until ctl -q await_startup --timeout 10 >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
            tail -30 "$DIR/log/server.out" >&2 || true
            die "RabbitMQ did not start"
        fi
        sleep 0.5
    done
}

stop() {
    if running; then
        log "stopping RabbitMQ $NODE"
        ctl stop >/dev/null 2>&1 || true
    fi
    if [ -f "$DIR/server.pid" ]; then
        local pid; pid="$(cat "$DIR/server.pid")"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$DIR/server.pid"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) running && echo "running" || { echo "stopped"; exit 1; } ;;
    reset) stop; rm -rf "$DIR/mnesia"; start ;;
    queues) ctl -q list_queues name messages_ready messages_unacknowledged ;;
    env)
        echo "export LIFEBOAT_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$PORT/"
        echo "export LIFEBOAT_TEST_AMQPS_PORT=$TLS_PORT"
        echo "export LIFEBOAT_TEST_TLS_DIR=$DIR/tls"
        echo "export LIFEBOAT_TEST_BROKER_CTL=$LIFEBOAT_ROOT/scripts/broker.sh"
        ;;
    *) echo "usage: $0 start|stop|restart|reset|status|queues|env" >&2; exit 2 ;;
esac
