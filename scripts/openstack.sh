#!/usr/bin/env bash
# A real OpenStack (Debian 12's packages, release Zed) of Lifeboat's own, for the tests, the demo
# and benchmarks: Keystone and Placement under uwsgi, Glance, Nova (api, conductor, scheduler,
# and nova-compute with the real libvirt driver), Cinder (api, scheduler, volume with the RBD
# driver on scripts/ceph.sh's cluster) and a real neutron-server (API only: ML2 with no
# mechanism drivers and no agents, so servers are booted `--nic none`).
#
#   scripts/openstack.sh start|stop|reset|status|env
#
# `start` installs what is missing, starts the broker (scripts/broker.sh), Ceph (scripts/ceph.sh)
# and the compute host (scripts/hypervisor.sh start $LIFEBOAT_OPENSTACK_COMPUTE_HOST, default 2)
# when they do not run, then every service, and returns once each API answers, Cinder's pool is
# up and the compute service is registered and discovered. Idempotent. `stop` stops what it
# started and keeps the data; `reset` also forgets the cloud (databases, images, the servers'
# domains and disks, Cinder's RBD images); `status` tells what runs; `env` prints `export`
# lines for the tests (credentials, clouds.yaml, names and ids).
#
# Everything listens on 127.0.0.1 only: APIs on $LIFEBOAT_OPENSTACK_PORT_BASE (default 15000):
# Keystone +0, Glance +1, Placement +2, Nova +3, Cinder +4, Neutron +5, and +6 a second Keystone
# on the same database and keys whose tokens live SHORT_TOKEN_SECONDS (tests of expired
# tokens: the services refuse them as they would any expired token). Databases are SQLite
# (WAL mode); RPC and notifications go through the project's broker (Nova's versioned and legacy
# notifications on the exchange `nova`, Cinder's on `openstack`, Glance's on `glance`). All
# configuration, databases, logs, pid files and state live in $LIFEBOAT_RUN_DIR/openstack;
# services read their own config files (--config-file, or OS_*_CONFIG_* for the uwsgi apps) and
# only the packages' read-only paste files under /etc. Nothing in /etc is written.
#
# nova-compute runs inside compute host N (hypervisor.sh's network, mount and UTS namespaces of
# lifeboat-hvN, host name lifeboat-hvN) and drives that host's own libvirtd, so its instances are
# domains there with disks at /var/lib/nova/instances/<uuid>/disk (a private bind mount,
# $LIFEBOAT_RUN_DIR/hvN/var-lib-nova from this side): Lifeboat reaches them as on any
# hypervisor stand-in, `ssh root@10.200.0.(N+1)` with $LIFEBOAT_RUN_DIR/ssh/id_ed25519. Inside
# the host, a forwarder (scripts/lib/netns-forward.py, run from here) makes the broker, the APIs
# and Ceph's mon and OSD ports answer on the host's own 127.0.0.1 at the same ports: nova-compute
# uses the same catalog URLs as everyone, and QEMU reaches the RBD volumes at the monitor and OSD
# addresses Ceph advertises (127.0.0.1), which no other address could stand for.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

SELF="$(readlink -f "$0")"
SCRIPTS="$(dirname "$SELF")"
PORT_BASE="${LIFEBOAT_OPENSTACK_PORT_BASE:-15000}"
KEYSTONE_PORT=$PORT_BASE
GLANCE_PORT=$((PORT_BASE + 1))
PLACEMENT_PORT=$((PORT_BASE + 2))
NOVA_PORT=$((PORT_BASE + 3))
CINDER_PORT=$((PORT_BASE + 4))
NEUTRON_PORT=$((PORT_BASE + 5))
SHORT_KEYSTONE_PORT=$((PORT_BASE + 6))
SHORT_TOKEN_SECONDS=20
BROKER_PORT="${LIFEBOAT_BROKER_PORT:-5699}"
CEPH_PORT="${LIFEBOAT_CEPH_PORT:-3390}"
CEPH_CONF="$LIFEBOAT_RUN_DIR/ceph/ceph.conf"
CEPH_CINDER_KEYRING="$LIFEBOAT_RUN_DIR/ceph/ceph.client.cinder.keyring"
COMPUTE_HOST="${LIFEBOAT_OPENSTACK_COMPUTE_HOST:-2}"
COMPUTE_NAME="lifeboat-hv$COMPUTE_HOST"
COMPUTE_ADDRESS="10.200.0.$((COMPUTE_HOST + 1))"
HV_DIR="$LIFEBOAT_RUN_DIR/hv$COMPUTE_HOST"

DIR="$LIFEBOAT_RUN_DIR/openstack"
ETC="$DIR/etc"
DB="$DIR/db"
LOG="$DIR/log"
RUN="$DIR/run"
STATE="$DIR/state"
SECRETS="$DIR/secrets"
IDS="$STATE/ids"
CLOUDS_YAML="$DIR/clouds.yaml"
REGION=RegionOne
HOST=127.0.0.1
AUTH_URL="http://$HOST:$KEYSTONE_PORT/v3"
SHORT_AUTH_URL="http://$HOST:$SHORT_KEYSTONE_PORT/v3"
TRANSPORT_URL="rabbit://guest:guest@$HOST:$BROKER_PORT/"
DOMAIN2=lifeboat-domain2
IMAGE_NAME=lifeboat-blank
FLAVOR_NAME=m1.tiny
PY=/usr/bin/python3
CLEAN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Services get a clean environment (no pyenv, no OS_* of the caller).
CLEAN_ENV=(env -i "PATH=$CLEAN_PATH" "HOME=$STATE" LANG=C.UTF-8)

OPENSTACK_PACKAGES=(keystone python3-openstackclient uwsgi-core uwsgi-plugin-python3 glance-api placement-api
                    nova-api nova-conductor nova-scheduler nova-compute cinder-api cinder-scheduler
                    cinder-volume neutron-server python3-rbd python3-rados python3-pika amqp-tools curl)
# What broker.sh, ceph.sh and hypervisor.sh need, installed here in the same apt run: they start
# in parallel, and their own installs would only queue on apt's lock.
PEER_PACKAGES=(rabbitmq-server openssl ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev libvirt-daemon-system
               libvirt-clients qemu-system-x86 qemu-utils openssh-server openssh-client iproute2)
# Every service but nova-compute and the forwarder, in start order. nova-conductor and
# nova-scheduler ask Placement for its version at start (and exit if their user cannot log in
# yet): they start once Keystone has the service users.
EARLY_SERVICES=(keystone keystone-short placement glance nova-api cinder-api cinder-scheduler cinder-volume neutron)
LATE_SERVICES=(nova-conductor nova-scheduler)
SERVICES=("${EARLY_SERVICES[@]}" "${LATE_SERVICES[@]}")
ALL_PROCS=("${SERVICES[@]}" forward nova-compute)

random_secret() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24; }
secret() { cat "$SECRETS/$1.password"; }

# --- packages --------------------------------------------------------------------------------------

# Debconf answers first, so that no package configures a database, RabbitMQ, Keystone
# credentials or endpoints of its own (their defaults are `false` already; asked anyway).
install_packages() {
    local missing=() pkg
    for pkg in "${OPENSTACK_PACKAGES[@]}" "${PEER_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    local q answers=""
    for q in keystone/configure_db keystone/create-admin-tenant keystone/register-endpoint \
        glance/configure_db glance/configure_rabbit glance/configure_ksat glance/configure_api-endpoint \
        placement/configure_db placement/configure_ksat placement/configure_api-endpoint \
        nova/configure_db novaapi/configure_db nova/configure_rabbit nova/configure_ksat \
        nova/configure_neutron nova/configure_placement nova/configure_api-endpoint \
        cinder/configure_db cinder/configure_rabbit cinder/configure_ksat cinder/configure_api-endpoint \
        neutron/configure_db neutron/configure_rabbit neutron/configure_ksat neutron/configure_nova \
        neutron/configure_api-endpoint; do
        answers+="${q%%/*} $q boolean false"$'\n'
    done
    command -v debconf-set-selections >/dev/null && debconf-set-selections <<<"$answers"
    # The packages' postinst would start their services with the stock /etc configs (ports 5000,
    # 8774...): a policy-rc.d that forbids it, only for this install and only if there is none
    # (container images usually ship one that does the same).
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# temporary, scripts/openstack.sh: no service starts during the install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    apt_install "${OPENSTACK_PACKAGES[@]}" "${PEER_PACKAGES[@]}" || rc=$?
    [ -z "$made_policy" ] || rm -f "$policy"
    [ $rc -eq 0 ] || die "installing the OpenStack packages failed"
}

# --- processes -------------------------------------------------------------------------------------

# PID of a process of ours (NAME.pid), if it runs: alive and started with our run directory.
proc_pid() {
    local file="$RUN/$1.pid" pid
    [ -s "$file" ] || return 1
    pid="$(tr -dc 0-9 <"$file")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR/" || return 1
    echo "$pid"
}

# Starts CMD as NAME in a session (and process group) of its own; output in $LOG/NAME.out.
spawn() {
    local name="$1"
    shift
    proc_pid "$name" >/dev/null && return 0
    setsid "${CLEAN_ENV[@]}" "$@" </dev/null >>"$LOG/$name.out" 2>&1 9>&- &
    echo $! >"$RUN/$name.pid"
}

# Every process started with our configuration, pid files lost or not: Python services (and
# their privsep helpers, through sudo) and uwsgi whose command line names our directory.
our_pids() {
    local pid
    for pid in $(pgrep -f -- "$DIR/(etc|run)/" || true); do
        case "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" in
            python3* | uwsgi* | sudo) echo "$pid" ;;
        esac
    done
}

# Kills processes of ours that no pid file knows, nor descends from one that does (left by a
# start or stop that was killed): they would hold the ports.
kill_strays() {
    local name pid known=" " p
    for name in "${ALL_PROCS[@]}"; do pid="$(proc_pid "$name")" && known+="$pid "; done
    for pid in $(our_pids); do
        p="$pid"
        while [ -n "$p" ] && [ "$p" -gt 1 ] && [[ "$known" != *" $p "* ]]; do
            p="$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null || true)"
        done
        [ -n "$p" ] && [ "$p" -gt 1 ] && continue
        log "killing a stray OpenStack process of this run directory ($pid)"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Alive and not a zombie (PID 1 here reaps orphans only every ~2 s; a zombie holds nothing).
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

stop_procs() {
    local name pid pids=() left
    for name in "$@"; do
        if pid="$(proc_pid "$name")"; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$RUN/$name.pid"
    done
    for _ in $(seq 150); do
        left=()
        for pid in "${pids[@]+"${pids[@]}"}"; do alive "$pid" && left+=("$pid"); done
        [ ${#left[@]} -eq 0 ] && return 0
        sleep 0.1
    done
    for pid in "${left[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
}

# Dies, showing the log, if NAME is not running.
check_alive() {
    proc_pid "$1" >/dev/null && return 0
    tail -n 25 "$LOG/$1.log" "$LOG/$1.out" >&2 2>/dev/null || true
    die "$1 exited (logs in $LOG)"
}

http_answers() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null | grep -q '^[1-4]'; }

# Waits until URL answers while NAME runs.
wait_http() {
    local name="$1" url="$2" deadline=$((SECONDS + ${3:-90}))
    until http_answers "$url"; do
        check_alive "$name"
        [ $SECONDS -lt $deadline ] || die "$name does not answer at $url (logs in $LOG)"
        sleep 0.3
    done
}

# --- compute host ------------------------------------------------------------------------------------

holder_pid() {
    local pid
    pid="$(tr -dc 0-9 <"$HV_DIR/holder.pid" 2>/dev/null)" && [ -n "$pid" ] &&
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sleep ] && echo "$pid"
}
ns_inode() { stat -L -c %i "$1" 2>/dev/null; }

# Runs CMD inside the compute host (as scripts/hypervisor.sh exec does).
in_compute() {
    local pid
    pid="$(holder_pid)" || die "hypervisor $COMPUTE_HOST is not running"
    nsenter -t "$pid" -n -m -u -- "${CLEAN_ENV[@]}" "$@"
}

# nova-compute and the forwarder belong to one incarnation of the host: a restarted host
# (new namespaces) needs them anew.
compute_procs_current() {
    local holder pid net
    holder="$(holder_pid)" || return 1
    net="$(ns_inode "/proc/$holder/ns/net")"
    [ "$(cat "$RUN/compute-netns" 2>/dev/null)" = "$net" ] || return 1
    pid="$(proc_pid nova-compute)" && [ "$(ns_inode "/proc/$pid/ns/net")" = "$net" ]
}

# The Ceph key of client.cinder as a libvirt secret of the compute host's libvirtd (QEMU opens
# the attached RBD volumes with it); one secret of ours, replaced if its uuid changed.
define_rbd_secret() {
    local uuid key u
    uuid="$(cat "$STATE/rbd-secret-uuid")"
    key="$(awk '$1 == "key" {print $3}' "$CEPH_CINDER_KEYRING")"
    [ -n "$key" ] || die "no key in $CEPH_CINDER_KEYRING"
    for u in $(in_compute virsh -q secret-list 2>/dev/null | awk '{print $1}'); do
        [ "$u" = "$uuid" ] && continue
        if in_compute virsh secret-dumpxml "$u" 2>/dev/null | grep -q "<name>lifeboat-openstack client.cinder</name>"; then
            in_compute virsh -q secret-undefine "$u" >/dev/null
        fi
    done
    cat >"$STATE/rbd-secret.xml" <<XML
<secret ephemeral='no' private='no'>
  <uuid>$uuid</uuid>
  <usage type='ceph'><name>lifeboat-openstack client.cinder</name></usage>
</secret>
XML
    (umask 077 && printf '%s' "$key" >"$STATE/rbd-secret.b64")
    in_compute virsh -q secret-define "$STATE/rbd-secret.xml" >/dev/null
    in_compute virsh -q secret-set-value "$uuid" --file "$STATE/rbd-secret.b64" >/dev/null
    rm -f "$STATE/rbd-secret.b64"
}

# --- configuration -----------------------------------------------------------------------------------

make_secrets() {
    mkdir -p "$SECRETS" && chmod 700 "$SECRETS"
    local who
    for who in admin alice bob carol service; do
        [ -s "$SECRETS/$who.password" ] || (umask 077 && random_secret >"$SECRETS/$who.password")
    done
    [ -s "$STATE/rbd-secret-uuid" ] || cat /proc/sys/kernel/random/uuid >"$STATE/rbd-secret-uuid"
}

# [keystone_authtoken] (or another section with the same options) for service user $2.
auth_section() {
    cat <<CONF
[$1]
www_authenticate_uri = $AUTH_URL
auth_url = $AUTH_URL
auth_type = password
user_domain_name = Default
project_domain_name = Default
project_name = service
username = $2
password = $(secret service)
region_name = $REGION
CONF
}

notifications_section() {
    cat <<CONF
[oslo_messaging_notifications]
driver = messagingv2
topics = notifications
CONF
}

write_configs() {
    mkdir -p "$ETC"/{keystone,glance,placement,nova,cinder,neutron}
    local svc_pw; svc_pw="$(secret service)"

    cat >"$ETC/keystone/keystone.conf" <<CONF
# Keystone of scripts/openstack.sh (uwsgi, $HOST:$KEYSTONE_PORT)
[DEFAULT]
log_file = $LOG/keystone.log
[database]
connection = sqlite:///$DB/keystone.sqlite
[token]
provider = fernet
expiration = 43200
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[fernet_receipts]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
[cache]
# Without a cache each token validation costs ~950 SQLite queries (~0.6 s). An in-process cache
# is coherent only within one process: Keystone runs one worker (see start_service).
enabled = true
backend = dogpile.cache.memory
[identity]
# bcrypt's cheapest cost: every login of a service or a test checks a password (test secrets).
password_hash_rounds = 4
CONF
    # The short-lived tokens' Keystone: the same configuration, its own log and token lifetime.
    mkdir -p "$ETC/keystone-short"
    sed -e "s|^expiration = .*|expiration = $SHORT_TOKEN_SECONDS|" -e "s|keystone.log|keystone-short.log|" \
        "$ETC/keystone/keystone.conf" >"$ETC/keystone-short/keystone.conf"

    cat >"$ETC/placement/placement.conf" <<CONF
# Placement of scripts/openstack.sh (uwsgi, $HOST:$PLACEMENT_PORT)
[DEFAULT]
log_file = $LOG/placement.log
[placement_database]
connection = sqlite:///$DB/placement.sqlite
[api]
auth_strategy = keystone
$(auth_section keystone_authtoken placement)
CONF

    cat >"$ETC/glance/glance-api.conf" <<CONF
# Glance of scripts/openstack.sh ($HOST:$GLANCE_PORT)
[DEFAULT]
bind_host = $HOST
bind_port = $GLANCE_PORT
graceful_shutdown_timeout = 5
workers = 1
transport_url = $TRANSPORT_URL
enabled_backends = file:file
image_cache_dir = $STATE/glance/cache
[database]
connection = sqlite:///$DB/glance.sqlite
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $STATE/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/tasks/
[oslo_concurrency]
lock_path = $STATE/glance/lock
$(auth_section keystone_authtoken glance)
$(notifications_section)
CONF

    cat >"$ETC/nova/nova.conf" <<CONF
# Nova of scripts/openstack.sh (api $HOST:$NOVA_PORT, conductor, scheduler; nova-compute adds
# nova-compute.conf and runs inside $COMPUTE_NAME)
[DEFAULT]
host = lifeboat-controller
transport_url = $TRANSPORT_URL
state_path = $STATE/nova
graceful_shutdown_timeout = 5
my_ip = $HOST
enabled_apis = osapi_compute
osapi_compute_listen = $HOST
osapi_compute_listen_port = $NOVA_PORT
osapi_compute_workers = 1
# No guest OS answers ACPI: stop and delete power off at once.
shutdown_timeout = 0
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
# timeout: wait up to 30 s for another process's write lock instead of pysqlite's 5 s (a
# conductor losing that race left a server in BUILD for good).
[api_database]
connection = sqlite:///$DB/nova_api.sqlite?timeout=30
[database]
connection = sqlite:///$DB/nova.sqlite?timeout=30
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
[oslo_concurrency]
lock_path = $STATE/nova/lock
[notifications]
notification_format = both
notify_on_state_change = vm_and_task_state
[glance]
region_name = $REGION
valid_interfaces = public
[cinder]
os_region_name = $REGION
catalog_info = volumev3:cinderv3:publicURL
auth_type = password
auth_url = $AUTH_URL
user_domain_name = Default
project_domain_name = Default
project_name = service
username = nova
password = $svc_pw
$(auth_section placement nova)
valid_interfaces = public
$(auth_section neutron nova)
valid_interfaces = public
service_metadata_proxy = false
$(auth_section service_user nova)
send_service_user_token = true
$(auth_section keystone_authtoken nova)
$(notifications_section)
[vnc]
enabled = false
[spice]
enabled = false
CONF

    cat >"$ETC/nova/nova-compute.conf" <<CONF
# nova-compute of scripts/openstack.sh, inside $COMPUTE_NAME ($COMPUTE_ADDRESS): its libvirtd,
# instances under that host's /var/lib/nova (= $HV_DIR/var-lib-nova here)
[DEFAULT]
host = $COMPUTE_NAME
my_ip = $COMPUTE_ADDRESS
state_path = $STATE/nova-compute
compute_driver = libvirt.LibvirtDriver
instances_path = /var/lib/nova/instances
heal_instance_info_cache_interval = -1
# No Neutron agents, no ports: nothing would ever plug a VIF.
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
reserved_host_memory_mb = 0
[libvirt]
virt_type = qemu
cpu_mode = none
connection_uri = qemu:///system
rbd_user = cinder
rbd_secret_uuid = $(cat "$STATE/rbd-secret-uuid")
# No guest OS acknowledges an unplug: fail fast rather than after minutes.
device_detach_attempts = 3
device_detach_timeout = 5
[workarounds]
# Debian's rootwrap filters accept only config files under /etc; this runs as root anyway.
disable_rootwrap = true
[oslo_concurrency]
lock_path = $STATE/nova-compute/lock
[os_brick]
lock_path = $STATE/nova-compute/lock
CONF

    cat >"$ETC/cinder/cinder.conf" <<CONF
# Cinder of scripts/openstack.sh (api $HOST:$CINDER_PORT, scheduler, volume: RBD on $CEPH_CONF)
[DEFAULT]
transport_url = $TRANSPORT_URL
auth_strategy = keystone
host = lifeboat-cinder
graceful_shutdown_timeout = 5
my_ip = $HOST
state_path = $STATE/cinder
api_paste_config = /etc/cinder/api-paste.ini
osapi_volume_listen = $HOST
osapi_volume_listen_port = $CINDER_PORT
osapi_volume_workers = 1
glance_api_servers = http://$HOST:$GLANCE_PORT
enabled_backends = ceph
# Report and publish the pool's capacity every few seconds (the scheduler needs it before the
# first create), not every minute.
report_interval = 5
periodic_interval = 5
periodic_fuzzy_delay = 0
backend_stats_polling_interval = 10
scheduler_driver_init_wait_time = 10
[database]
connection = sqlite:///$DB/cinder.sqlite
[ceph]
volume_driver = cinder.volume.drivers.rbd.RBDDriver
volume_backend_name = ceph
rbd_pool = volumes
rbd_ceph_conf = $CEPH_CONF
rbd_user = cinder
rbd_secret_uuid = $(cat "$STATE/rbd-secret-uuid")
rbd_flatten_volume_from_snapshot = false
[oslo_concurrency]
lock_path = $STATE/cinder/lock
[coordination]
backend_url = file://$STATE/cinder/coordination
$(auth_section keystone_authtoken cinder)
$(auth_section nova cinder)
interface = public
$(notifications_section)
CONF

    cat >"$ETC/neutron/neutron.conf" <<CONF
# Neutron of scripts/openstack.sh ($HOST:$NEUTRON_PORT): the API only, ML2 without mechanism
# drivers and without agents (no ports are ever bound: servers boot with --nic none)
[DEFAULT]
host = lifeboat-controller
bind_host = $HOST
bind_port = $NEUTRON_PORT
graceful_shutdown_timeout = 5
transport_url = $TRANSPORT_URL
state_path = $STATE/neutron
api_paste_config = /etc/neutron/api-paste.ini
auth_strategy = keystone
core_plugin = ml2
service_plugins =
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
[database]
connection = sqlite:///$DB/neutron.sqlite
[ml2]
type_drivers = flat,vlan
tenant_network_types =
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[oslo_concurrency]
lock_path = $STATE/neutron/lock
$(auth_section keystone_authtoken neutron)
[oslo_messaging_notifications]
driver = noop
CONF
    chmod 600 "$ETC"/*/*.conf
    mkdir -p "$STATE"/{keystone,glance,nova,nova-compute,cinder,neutron}
}

write_clouds_yaml() {
    local tmp="$CLOUDS_YAML.tmp"
    cloud() {   # cloud NAME USER PASSWORD PROJECT DOMAIN [AUTH_URL]
        cat <<YAML
  $1:
    auth:
      auth_url: ${6:-$AUTH_URL}
      username: $2
      password: $3
      project_name: $4
      user_domain_name: $5
      project_domain_name: $5
    region_name: $REGION
    identity_api_version: 3
    interface: public
YAML
    }
    {
        echo "# Written by scripts/openstack.sh: the clouds of Lifeboat's test OpenStack."
        echo "clouds:"
        cloud lifeboat-admin admin "$(secret admin)" admin Default
        cloud lifeboat-alice alice "$(secret alice)" alice-project "$DOMAIN2"
        cloud lifeboat-bob bob "$(secret bob)" demo Default
        cloud lifeboat-carol carol "$(secret carol)" demo Default
        cloud lifeboat-bob-short bob "$(secret bob)" demo Default "$SHORT_AUTH_URL"
    } >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$CLOUDS_YAML"
}

# What openstack-bootstrap.py needs: URLs, names, password files, flavors, the image.
write_bootstrap_config() {
    cat >"$STATE/bootstrap.json" <<JSON
{
  "auth_url": "$AUTH_URL",
  "region": "$REGION",
  "ids_file": "$IDS",
  "domain2": "$DOMAIN2",
  "secrets": {"admin": "$SECRETS/admin.password", "alice": "$SECRETS/alice.password",
              "bob": "$SECRETS/bob.password", "carol": "$SECRETS/carol.password",
              "service": "$SECRETS/service.password"},
  "service_users": ["glance", "placement", "nova", "cinder", "neutron"],
  "catalog": [
    {"type": "image", "name": "glance", "url": "http://$HOST:$GLANCE_PORT"},
    {"type": "placement", "name": "placement", "url": "http://$HOST:$PLACEMENT_PORT"},
    {"type": "compute", "name": "nova", "url": "http://$HOST:$NOVA_PORT/v2.1"},
    {"type": "volumev3", "name": "cinderv3", "url": "http://$HOST:$CINDER_PORT/v3/%(project_id)s"},
    {"type": "block-storage", "name": "cinder", "url": "http://$HOST:$CINDER_PORT/v3/%(project_id)s"},
    {"type": "network", "name": "neutron", "url": "http://$HOST:$NEUTRON_PORT"}
  ],
  "flavors": [
    {"name": "$FLAVOR_NAME", "id": "lifeboat-tiny", "ram": 64, "vcpus": 1, "disk": 1},
    {"name": "m1.small", "id": "lifeboat-small", "ram": 128, "vcpus": 1, "disk": 2}
  ],
  "image": {"name": "$IMAGE_NAME", "size_mib": 16,
            "properties": {"hw_disk_bus": "scsi", "hw_scsi_model": "virtio-scsi"}},
  "compute_host": "$COMPUTE_NAME",
  "discover_hosts": ["nova-manage", "--config-file", "$ETC/nova/nova.conf", "cell_v2", "discover_hosts"]
}
JSON
}

# --- databases ---------------------------------------------------------------------------------------

# Runs a setup command with its output in $LOG/setup-NAME.log; dies showing it on failure.
setup_cmd() {
    local name="$1" size
    shift
    size="$(stat -c %s "$LOG/setup-$name.log" 2>/dev/null || echo 0)"
    "${CLEAN_ENV[@]}" "$@" >>"$LOG/setup-$name.log" 2>&1 ||
        { tail -c +"$((size + 1))" "$LOG/setup-$name.log" | tail -n 30 >&2; echo "setup of $name failed: $*" >&2; return 1; }
}

init_keystone() {
    local k=(--config-file "$ETC/keystone/keystone.conf")
    mkdir -p "$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys"
    chmod 700 "$STATE/keystone/fernet-keys" "$STATE/keystone/credential-keys"
    setup_cmd keystone keystone-manage "${k[@]}" db_sync
    setup_cmd keystone keystone-manage "${k[@]}" fernet_setup --keystone-user root --keystone-group root
    setup_cmd keystone keystone-manage "${k[@]}" credential_setup --keystone-user root --keystone-group root
    setup_cmd keystone keystone-manage "${k[@]}" bootstrap --bootstrap-password "$(secret admin)" \
        --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
        --bootstrap-service-name keystone --bootstrap-region-id "$REGION" \
        --bootstrap-admin-url "$AUTH_URL" --bootstrap-internal-url "$AUTH_URL" --bootstrap-public-url "$AUTH_URL"
}

init_nova() {
    local n=(--config-file "$ETC/nova/nova.conf")
    setup_cmd nova nova-manage "${n[@]}" api_db sync
    setup_cmd nova nova-manage "${n[@]}" cell_v2 map_cell0 --database_connection "sqlite:///$DB/nova_cell0.sqlite"
    setup_cmd nova nova-manage "${n[@]}" cell_v2 create_cell --name cell1
    setup_cmd nova nova-manage "${n[@]}" db sync
}

# Neutron's migrations alter constraints, which SQLite cannot: the schema comes from the models
# (as Neutron's own tests make it), then the migrations are stamped as applied.
init_neutron() {
    setup_cmd neutron "$PY" -c '
import sys, sqlalchemy
from neutron.db.migration.models import head
head.get_metadata().create_all(sqlalchemy.create_engine(sys.argv[1]))' "sqlite:///$DB/neutron.sqlite"
    setup_cmd neutron neutron-db-manage --config-file "$ETC/neutron/neutron.conf" stamp heads
}

init_databases() {
    [ -f "$STATE/databases-ready" ] && return 0
    log "creating the databases (SQLite)"
    rm -f "$DB"/*.sqlite*
    mkdir -p "$DB"
    local pids=() failed="" pid
    init_keystone & pids+=($!)
    setup_cmd glance glance-manage --config-file "$ETC/glance/glance-api.conf" db_sync & pids+=($!)
    setup_cmd placement placement-manage --config-file "$ETC/placement/placement.conf" db sync & pids+=($!)
    init_nova & pids+=($!)
    setup_cmd cinder cinder-manage --config-file "$ETC/cinder/cinder.conf" db sync & pids+=($!)
    init_neutron & pids+=($!)
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [ -z "$failed" ] || die "creating the databases failed (logs in $LOG/setup-*.log)"
    # WAL: readers and the one writer of each database no longer block each other.
    "$PY" -c '
import sqlite3, sys
for path in sys.argv[1:]:
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal", path
    c.close()' "$DB"/*.sqlite
    touch "$STATE/databases-ready"
}

# --- services ------------------------------------------------------------------------------------

start_service() {
    local name="$1"
    proc_pid "$name" >/dev/null && return 0
    case "$name" in
        keystone)
            # One single-threaded worker: multi-threaded ones crashed on SQLite and then held
            # its lock ("database is locked"), and several processes would each have a cache of
            # their own that the others' changes do not invalidate (a role granted, a token
            # revoked would go unseen for minutes). Cached, most requests take ~10 ms.
            # uwsgi closes every connection after one response but answers HTTP/1.1 without
            # saying so: clients that reuse connections (the services' keystonemiddleware)
            # then fail with "connection reset" (503s). The header says so.
            spawn keystone uwsgi --plugin python3 --http-socket "$HOST:$KEYSTONE_PORT" \
                --wsgi-file /usr/bin/keystone-wsgi-public --master --processes 1 --threads 1 \
                --lazy-apps --die-on-term --need-app --buffer-size 65535 --add-header "Connection: close" \
                --env "OS_KEYSTONE_CONFIG_FILES=$ETC/keystone/keystone.conf" ;;
        keystone-short)
            spawn keystone-short uwsgi --plugin python3 --http-socket "$HOST:$SHORT_KEYSTONE_PORT" \
                --wsgi-file /usr/bin/keystone-wsgi-public --master --processes 1 --threads 1 \
                --lazy-apps --die-on-term --need-app --buffer-size 65535 --add-header "Connection: close" \
                --env "OS_KEYSTONE_CONFIG_FILES=$ETC/keystone-short/keystone.conf" ;;
        placement)
            spawn placement uwsgi --plugin python3 --http-socket "$HOST:$PLACEMENT_PORT" \
                --wsgi-file /usr/bin/placement-api --master --processes 1 --threads 1 \
                --lazy-apps --die-on-term --need-app --buffer-size 65535 --add-header "Connection: close" \
                --env "OS_PLACEMENT_CONFIG_DIR=$ETC/placement" ;;
        glance)
            spawn glance glance-api --config-file "$ETC/glance/glance-api.conf" --log-file "$LOG/glance.log" ;;
        nova-api | nova-conductor | nova-scheduler)
            spawn "$name" "$name" --config-file "$ETC/nova/nova.conf" --log-file "$LOG/$name.log" ;;
        cinder-api | cinder-scheduler | cinder-volume)
            spawn "$name" "$PY" "$SCRIPTS/lib/cinder-start.py" "${name#cinder-}" \
                --config-file "$ETC/cinder/cinder.conf" --log-file "$LOG/$name.log" ;;
        neutron)
            spawn neutron neutron-server --config-file "$ETC/neutron/neutron.conf" --log-file "$LOG/neutron.log" ;;
        *) die "unknown service $name" ;;
    esac
}

# The forwarder and nova-compute, for the compute host's current namespaces.
start_compute() {
    compute_procs_current && proc_pid forward >/dev/null && return 0
    stop_procs nova-compute
    stop_procs forward
    local holder net ports=()
    holder="$(holder_pid)" || die "hypervisor $COMPUTE_HOST is not running"
    net="$(ns_inode "/proc/$holder/ns/net")"
    ports=($(seq "$KEYSTONE_PORT" "$NEUTRON_PORT") "$BROKER_PORT" $(seq "$CEPH_PORT" $((CEPH_PORT + 29))))
    rm -f "$RUN/forward.pid"
    setsid "${CLEAN_ENV[@]}" "$PY" "$SCRIPTS/lib/netns-forward.py" "/proc/$holder/ns/net" "$RUN/forward.pid" \
        "${ports[@]}" </dev/null >>"$LOG/forward.out" 2>&1 9>&- &
    local fpid=$!
    for _ in $(seq 100); do [ -s "$RUN/forward.pid" ] && break; kill -0 "$fpid" 2>/dev/null || break; sleep 0.05; done
    proc_pid forward >/dev/null || { tail -n 20 "$LOG/forward.out" >&2; die "the forwarder into $COMPUTE_NAME did not start"; }
    echo "$net" >"$RUN/compute-netns"
    install -d -m 755 "$HV_DIR/var-lib-nova/instances"
    setsid nsenter -t "$holder" -n -m -u -- "${CLEAN_ENV[@]}" nova-compute \
        --config-file "$ETC/nova/nova.conf" --config-file "$ETC/nova/nova-compute.conf" \
        --log-file "$LOG/nova-compute.log" </dev/null >>"$LOG/nova-compute.out" 2>&1 9>&- &
    echo $! >"$RUN/nova-compute.pid"
}

all_running() {
    local name
    for name in "${ALL_PROCS[@]}"; do proc_pid "$name" >/dev/null || return 1; done
    compute_procs_current
}

# --- start / stop --------------------------------------------------------------------------------

start() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 600 9 || die "another scripts/openstack.sh holds $DIR/.lock"
    if [ -f "$STATE/ready" ] && all_running && "$SCRIPTS/broker.sh" status >/dev/null 2>&1 &&
        "$SCRIPTS/ceph.sh" status >/dev/null 2>&1; then
        return 0
    fi
    local t0=$SECONDS
    install_packages
    log "OpenStack: the broker, Ceph and hypervisor $COMPUTE_HOST (the compute host)"
    mkdir -p "$ETC" "$DB" "$LOG" "$RUN" "$STATE"
    local pids=() failed="" pid what
    for what in broker ceph hypervisor; do
        case $what in
            broker) "$SCRIPTS/broker.sh" start ;;
            ceph) "$SCRIPTS/ceph.sh" start ;;
            hypervisor) "$SCRIPTS/hypervisor.sh" start "$COMPUTE_HOST" ;;
        esac 9>&- >>"$LOG/peers.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [ -z "$failed" ] || { tail -n 20 "$LOG/peers.log" >&2; die "the broker, Ceph or hypervisor $COMPUTE_HOST did not start"; }
    in_compute mountpoint -q /var/lib/nova ||
        die "hypervisor $COMPUTE_HOST has no private /var/lib/nova (started by an older scripts/hypervisor.sh): stop and start it"

    rm -f "$STATE/ready"
    make_secrets
    write_configs
    write_clouds_yaml
    write_bootstrap_config
    init_databases
    define_rbd_secret

    log "OpenStack: starting Keystone, Placement, Glance, Nova, Cinder and Neutron on $HOST:$PORT_BASE+"
    kill_strays
    local name
    for name in "${EARLY_SERVICES[@]}"; do start_service "$name"; done
    wait_http keystone "http://$HOST:$KEYSTONE_PORT/v3"
    wait_http keystone-short "$SHORT_AUTH_URL"
    log "OpenStack: Keystone answers; users, projects, roles and the catalog"
    setup_cmd bootstrap "$PY" "$SCRIPTS/lib/openstack-bootstrap.py" identity "$STATE/bootstrap.json" ||
        die "the identity bootstrap failed"
    wait_http placement "http://$HOST:$PLACEMENT_PORT/"
    for name in "${LATE_SERVICES[@]}"; do start_service "$name"; done
    log "OpenStack: nova-compute inside $COMPUTE_NAME ($COMPUTE_ADDRESS)"
    start_compute
    wait_http glance "http://$HOST:$GLANCE_PORT/"
    wait_http nova-api "http://$HOST:$NOVA_PORT/"
    wait_http cinder-api "http://$HOST:$CINDER_PORT/"
    wait_http neutron "http://$HOST:$NEUTRON_PORT/"
    for name in "${ALL_PROCS[@]}"; do check_alive "$name"; done
    log "OpenStack: flavors, image $IMAGE_NAME; waiting for the compute service and Cinder's pool"
    setup_cmd bootstrap "$PY" "$SCRIPTS/lib/openstack-bootstrap.py" resources "$STATE/bootstrap.json" || {
        for name in "${ALL_PROCS[@]}"; do check_alive "$name"; done
        die "the resource bootstrap failed (logs in $LOG)"
    }
    touch "$STATE/ready"
    log "OpenStack ready in $((SECONDS - t0)) s (eval \"\$(scripts/openstack.sh env)\")"
}

stop() {
    [ -d "$RUN" ] || return 0
    local any="" name
    for name in "${ALL_PROCS[@]}"; do proc_pid "$name" >/dev/null && any=1; done
    [ -z "$any" ] || log "stopping OpenStack ($DIR)"
    # The forwarder last: without it nova-compute would spend its shutdown reconnecting.
    stop_procs nova-compute "${SERVICES[@]}"
    stop_procs forward
    # Whatever is left of ours (a lost pid file, a privsep helper).
    local pid
    for pid in $(our_pids); do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do [ -z "$(our_pids)" ] && break; sleep 0.1; done
    for pid in $(our_pids); do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$STATE/ready" "$RUN/compute-netns"
}

# Removes the servers' domains and disks on the compute host, the libvirt secret and Cinder's
# RBD images (volumes/volume-<uuid> and their snapshots), then the whole state directory.
reset() {
    stop
    if holder_pid >/dev/null && [ -S "$HV_DIR/run-libvirt/libvirt-sock" ]; then
        local dom u
        for dom in $(in_compute virsh -q list --all --name 2>/dev/null | grep '^instance-' || true); do
            in_compute virsh -q destroy "$dom" >/dev/null 2>&1 || true
            in_compute virsh -q undefine "$dom" --nvram >/dev/null 2>&1 || in_compute virsh -q undefine "$dom" >/dev/null 2>&1 || true
        done
        for u in $(in_compute virsh -q secret-list 2>/dev/null | awk '{print $1}'); do
            in_compute virsh secret-dumpxml "$u" 2>/dev/null | grep -q "<name>lifeboat-openstack client.cinder</name>" &&
                in_compute virsh -q secret-undefine "$u" >/dev/null 2>&1 || true
        done
    else
        rm -f "$HV_DIR"/etc-libvirt/qemu/instance-*.xml
    fi
    rm -rf "$HV_DIR/var-lib-nova/instances"
    if [ -f "$CEPH_CONF" ] && "$SCRIPTS/ceph.sh" status >/dev/null 2>&1; then
        "$PY" - "$CEPH_CONF" <<'PY' || echo "warning: could not remove Cinder's RBD images" >&2
import re, sys, rados, rbd
with rados.Rados(conffile=sys.argv[1], name="client.admin", conf={"rados_mon_op_timeout": "10"}) as c:
    with c.open_ioctx("volumes") as io:
        for name in rbd.RBD().list(io):
            if not re.fullmatch(r"volume-[0-9a-f-]{36}(\.deleted)?", name):
                continue
            with rbd.Image(io, name) as img:
                for snap in img.list_snaps():
                    if img.is_protected_snap(snap["name"]):
                        img.unprotect_snap(snap["name"])
                    img.remove_snap(snap["name"])
            rbd.RBD().remove(io, name)
PY
    fi
    rm -rf "$DIR"
}

status() {
    local name pid state rc=0
    for name in "${ALL_PROCS[@]}"; do
        if pid="$(proc_pid "$name")"; then state="running (pid $pid)"; else state="stopped"; rc=1; fi
        printf '%-16s %s\n' "$name" "$state"
    done
    [ $rc -eq 0 ] && ! compute_procs_current && { echo "nova-compute runs in an old incarnation of $COMPUTE_NAME"; rc=1; }
    if [ $rc -eq 0 ] && [ -f "$STATE/ready" ]; then
        echo "ready: Keystone $AUTH_URL, compute host $COMPUTE_NAME ($COMPUTE_ADDRESS)"
    else
        echo "not ready"
        rc=1
    fi
    return $rc
}

print_env() {
    [ -f "$IDS" ] || die "no OpenStack here yet (scripts/openstack.sh start)"
    local k v
    echo "export LIFEBOAT_TEST_OPENSTACK=1"
    echo "export OS_AUTH_URL=$AUTH_URL"
    echo "export OS_REGION_NAME=$REGION"
    echo "export OS_IDENTITY_API_VERSION=3"
    echo "export OS_INTERFACE=public"
    # The admin's credentials as a cloud, not as OS_USERNAME/OS_PASSWORD...: those would
    # override every `--os-cloud lifeboat-alice` too (the client merges them over clouds.yaml).
    echo "export OS_CLIENT_CONFIG_FILE=$CLOUDS_YAML"
    echo "export OS_CLOUD=lifeboat-admin"
    echo "export LIFEBOAT_TEST_OS_CLOUDS_YAML=$CLOUDS_YAML"
    echo "export LIFEBOAT_TEST_OS_ADMIN_USER=admin"
    echo "export LIFEBOAT_TEST_OS_ADMIN_PASSWORD=$(secret admin)"
    echo "export LIFEBOAT_TEST_OS_ADMIN_PASSWORD_FILE=$SECRETS/admin.password"
    echo "export LIFEBOAT_TEST_OS_ADMIN_PROJECT=admin"
    echo "export LIFEBOAT_TEST_OS_ADMIN_DOMAIN=Default"
    echo "export LIFEBOAT_TEST_OS_DOMAIN2=$DOMAIN2"
    echo "export LIFEBOAT_TEST_OS_ALICE_USER=alice"
    echo "export LIFEBOAT_TEST_OS_ALICE_PASSWORD_FILE=$SECRETS/alice.password"
    echo "export LIFEBOAT_TEST_OS_ALICE_PROJECT=alice-project"
    echo "export LIFEBOAT_TEST_OS_BOB_USER=bob"
    echo "export LIFEBOAT_TEST_OS_BOB_PASSWORD_FILE=$SECRETS/bob.password"
    echo "export LIFEBOAT_TEST_OS_CAROL_USER=carol"
    echo "export LIFEBOAT_TEST_OS_CAROL_PASSWORD_FILE=$SECRETS/carol.password"
    echo "export LIFEBOAT_TEST_OS_DEMO_PROJECT=demo"
    echo "export LIFEBOAT_TEST_OS_RESTORE_PROJECT=restore-target"
    while IFS='=' read -r k v; do
        [ -n "$k" ] && echo "export LIFEBOAT_TEST_OS_$k=$v"
    done <"$IDS"
    echo "export LIFEBOAT_TEST_OS_FLAVOR=$FLAVOR_NAME"
    echo "export LIFEBOAT_TEST_OS_IMAGE=$IMAGE_NAME"
    echo "export LIFEBOAT_TEST_OS_COMPUTE_HOST=$COMPUTE_HOST"
    echo "export LIFEBOAT_TEST_OS_COMPUTE_NAME=$COMPUTE_NAME"
    echo "export LIFEBOAT_TEST_OS_COMPUTE_ADDRESS=$COMPUTE_ADDRESS"
    echo "export LIFEBOAT_TEST_OS_INSTANCES=$HV_DIR/var-lib-nova/instances"
    echo "export LIFEBOAT_TEST_OS_RBD_SECRET_UUID=$(cat "$STATE/rbd-secret-uuid")"
    echo "export LIFEBOAT_TEST_OS_PORT_BASE=$PORT_BASE"
    echo "export LIFEBOAT_TEST_OS_SHORT_TOKEN_SECONDS=$SHORT_TOKEN_SECONDS"
    echo "export LIFEBOAT_TEST_OS_CTL=$SELF"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    reset) reset ;;
    status) status ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|reset|status|env" >&2; exit 2 ;;
esac
