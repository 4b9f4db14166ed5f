# Benji 0.17 (https://benji-backup.me), a peer that benchmarks measure Lifeboat against on
# Ceph: installs it, writes its configuration and runs its full and differential backups of
# an RBD snapshot the way Benji's own scripts do (`rbd diff --whole-object` as hints).
# Sourced after scripts/lib/common.sh (log, die, apt_install), under `set -euo pipefail`.
#
#   benji_install                                       Benji 0.17.0 in $BENJI_VENV (idempotent)
#   benji_configure DIR CEPH_CONF CEPH_USER CEPH_KEYRING   config + SQLite + file storage in DIR
#   benji_backup_full POOL IMAGE SNAP VERSION_NAME       prints the new version uid
#   benji_backup_diff POOL IMAGE SNAP PREV_SNAP          prints the new version uid
#   benji_ls [FILTER]                                    versions as JSON (benji -m ls)
#   benji_restore_file UID PATH                          restores a version into a file
#   benji_version_field UID FIELD                        one field of a version (size, bytes_read...)
#   benji_cli CMD...                                     any Benji command with our config
#
# Pitfalls (Benji 0.17.0 on Debian 12 / Python 3.11):
# - Benji pins ruamel.yaml<0.16, which our notes found unusable on Python 3.11. ruamel.yaml 0.17.21
#   (pure Python on 3.11, no ruamel.yaml.clib) still has the ruamel.yaml.load(Loader=...) API
#   Benji calls (0.18 removed it), so every package is installed pinned with --no-deps.
# - Benji imports pkg_resources and setuptools at run time: setuptools is pinned in the venv.
# - There is no `benji --version`; the install check imports benji and asks for its version.
# - The base version of a differential backup is `-f UID` in 0.17 (`-b` is the block size).
# - Source URLs are `rbd:POOL/IMAGE@SNAP` (not rbd://, whose "host" Benji refuses); the io
#   module takes no keyring option, so the keyring goes in the URL's query string, which Benji
#   hands to librados as extra configuration.
# shellcheck shell=bash

: "${BENJI_VENV:=/opt/lifeboat-peers/benji-0.17}"
BENJI_VERSION=0.17.0

# Benji and its whole dependency closure, each at one version (installed with --no-deps, so
# nothing unpinned comes in). ruamel.yaml overrides Benji's own <0.16 pin (see above).
BENJI_PACKAGES=(
    "benji==$BENJI_VERSION"
    ruamel.yaml==0.17.21
    PrettyTable==0.7.2
    SQLAlchemy==1.4.54 greenlet==3.1.1
    alembic==1.13.3 Mako==1.3.5 MarkupSafe==2.1.5 typing_extensions==4.12.2
    setproctitle==1.3.3
    python-dateutil==2.9.0.post0 six==1.16.0
    psycopg2-binary==2.9.9
    argcomplete==1.12.3
    sparsebitfield==0.2.5 sortedcontainers==2.4.0
    Cerberus==1.3.5
    pycryptodome==3.20.0
    pyparsing==2.4.7
    semantic-version==2.10.0
    dateparser==1.2.0 pytz==2024.2 regex==2024.9.11 tzlocal==5.2
    structlog==24.4.0
    colorama==0.4.6
    diskcache==5.6.3
    attrs==21.4.0
    zstandard==0.23.0
)
# Build tools for the two packages that PyPI has only as source (sparsebitfield, PrettyTable),
# installed first and used with --no-build-isolation so that no unpinned build dependency
# is fetched. setuptools also provides pkg_resources, which Benji imports at run time.
BENJI_BUILD_PACKAGES=(setuptools==66.1.1 wheel==0.42.0)

# Parallelism for a 2-core machine. Benji hashes every block in its main thread and
# compresses in the storage's writer threads (zstd and BLAKE2 release the GIL): 4 reader
# threads keep librbd busy while one block is hashed, 2 writers match the cores.
: "${BENJI_SIMULTANEOUS_READS:=4}"
: "${BENJI_SIMULTANEOUS_WRITES:=2}"
: "${BENJI_ZSTD_LEVEL:=1}"
# rbd: librbd in reader threads, the image opened once per 4 MiB block; rbdaio: librbd's
# asynchronous reads. On a loaded 2-core machine the two (and 2/2, 3/3, 4/2, 6/2 threads)
# measured within the noise of each other.
: "${BENJI_IO_MODULE:=rbd}"

_benji_works() {
    [ -x "$BENJI_VENV/bin/benji" ] || return 1
    "$BENJI_VENV/bin/python" - "$BENJI_VERSION" <<'PY' >/dev/null 2>&1
import sys, benji
assert benji.__version__ == sys.argv[1], benji.__version__
import ruamel.yaml, rados, rbd, zstandard, sparsebitfield
import benji.config, benji.database, benji.io.rbd, benji.io.rbdaio, benji.storage.file, benji.transform.zstd
PY
    "$BENJI_VENV/bin/benji" --help >/dev/null 2>&1
}

benji_install() {
    if _benji_works; then return 0; fi
    # Debian's librados/librbd bindings (the venv sees them), the venv module and a compiler.
    apt_install python3-rbd python3-rados python3-venv python3-dev gcc
    log "installing Benji $BENJI_VERSION in $BENJI_VENV"
    rm -rf "$BENJI_VENV"
    mkdir -p "$(dirname "$BENJI_VENV")"
    /usr/bin/python3 -m venv --system-site-packages "$BENJI_VENV"
    local pip=("$BENJI_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input)
    "${pip[@]}" "${BENJI_BUILD_PACKAGES[@]}" >&2 || die "pip could not install ${BENJI_BUILD_PACKAGES[*]}"
    "${pip[@]}" --no-deps --no-build-isolation "${BENJI_PACKAGES[@]}" >&2 ||
        die "pip could not install Benji $BENJI_VERSION"
    _benji_works || die "Benji $BENJI_VERSION is installed in $BENJI_VENV but does not start"
}

# Runs Benji with the configuration of the last benji_configure (or $BENJI_DIR/benji.yaml).
benji_cli() {
    [ -n "${BENJI_DIR:-}" ] && [ -f "$BENJI_DIR/benji.yaml" ] || die "benji_cli: run benji_configure first"
    "$BENJI_VENV/bin/benji" -c "$BENJI_DIR/benji.yaml" "$@"
}

benji_configure() {
    [ $# -eq 4 ] || die "usage: benji_configure DIR CEPH_CONF CEPH_USER CEPH_KEYRING"
    local dir="$1" conf="$2" user="${3#client.}" keyring="$4"
    [ -f "$conf" ] || die "benji_configure: no Ceph config $conf"
    [ -r "$keyring" ] || die "benji_configure: cannot read the keyring $keyring"
    mkdir -p "$dir/storage"
    dir="$(cd "$dir" && pwd)"
    conf="$(readlink -f "$conf")"
    keyring="$(readlink -f "$keyring")"
    case "$keyring" in *[!-a-zA-Z0-9_./]*) die "benji_configure: the keyring path must be plain ($keyring)" ;; esac
    BENJI_DIR="$dir"
    export BENJI_DIR
    # configurationVersion '1' is the only one Benji 0.17 knows.
    cat > "$dir/benji.yaml" <<YAML
# Written by Lifeboat's scripts/lib/benji.sh for benchmarks.
configurationVersion: '1'
databaseEngine: sqlite:///$dir/benji.sqlite
defaultStorage: storage-1
logFile: null
blockSize: 4194304
processName: benji
storages:
  - name: storage-1
    storageId: 1
    module: file
    configuration:
      path: $dir/storage
      activeTransforms: [zstd]
      simultaneousWrites: $BENJI_SIMULTANEOUS_WRITES
      simultaneousReads: $BENJI_SIMULTANEOUS_READS
transforms:
  - name: zstd
    module: zstd
    configuration:
      level: $BENJI_ZSTD_LEVEL
ios:
  - name: rbd
    module: $BENJI_IO_MODULE
    configuration:
      cephConfigFile: $conf
      clientIdentifier: $user
      simultaneousReads: $BENJI_SIMULTANEOUS_READS
      simultaneousWrites: $BENJI_SIMULTANEOUS_WRITES
  # For restores to a file (benji_restore_file), to check what a backup holds.
  - name: file
    module: file
    configuration:
      simultaneousReads: $BENJI_SIMULTANEOUS_READS
      simultaneousWrites: $BENJI_SIMULTANEOUS_WRITES
nbd:
  blockCache:
    directory: $dir/nbd/block-cache
  cowStore:
    directory: $dir/nbd/cow-store
YAML
    # Read by the backups: librados takes the keyring from the URL's query string.
    printf '%s\n' "$keyring" > "$dir/keyring-path"
    rm -f "$dir/benji.sqlite"
    benji_cli --log-level ERROR database-init >/dev/null || die "benji database-init failed"
}

_benji_source_url() {
    echo "rbd:$1/$2@$3?keyring=$(cat "$BENJI_DIR/keyring-path")"
}

# The uid of the version that `benji -m backup` printed (stdin).
_benji_uid_from_json() {
    "$BENJI_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["versions"][0]["uid"])'
}

# One field of a version, e.g. `benji_version_field UID bytes_written`.
benji_version_field() {
    benji_cli -m --log-level ERROR ls "uid == \"$1\"" |
        "$BENJI_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["versions"][0][sys.argv[1]])' "$2"
}

benji_ls() {
    benji_cli -m --log-level ERROR ls "$@"
}

# Restores a version into the file PATH (sparse), e.g. to compare it with `rbd export`.
benji_restore_file() {
    [ $# -eq 2 ] || die "usage: benji_restore_file UID PATH"
    benji_cli --log-level ERROR restore --sparse --force "$1" "file:$2" || die "benji restore of $1 failed"
}

# A full backup of POOL/IMAGE@SNAP as the Benji volume VERSION_NAME, with the snapshot's
# allocated extents as hints (Benji's initial backup).
benji_backup_full() {
    [ $# -eq 4 ] || die "usage: benji_backup_full POOL IMAGE SNAP VERSION_NAME"
    local pool="$1" image="$2" snap="$3" name="$4" hints out
    hints="$(mktemp "${TMPDIR:-/tmp}/benji-hints.XXXXXX")"
    _benji_rbd diff --whole-object --format json "$pool/$image@$snap" > "$hints" ||
        { rm -f "$hints"; die "rbd diff of $pool/$image@$snap failed"; }
    out="$(benji_cli -m --log-level ERROR backup -s "$snap" -r "$hints" \
        -l "rbd-pool=$pool" -l "rbd-image=$image" \
        "$(_benji_source_url "$pool" "$image" "$snap")" "$name")" ||
        { rm -f "$hints"; die "Benji's full backup of $pool/$image@$snap failed"; }
    rm -f "$hints"
    _benji_uid_from_json <<<"$out"
}

# A differential backup of POOL/IMAGE@SNAP based on the valid version of PREV_SNAP of that
# image (`-f UID`), reading only the extents `rbd diff --from-snap PREV_SNAP` reports.
benji_backup_diff() {
    [ $# -eq 4 ] || die "usage: benji_backup_diff POOL IMAGE SNAP PREV_SNAP"
    local pool="$1" image="$2" snap="$3" prev="$4" base hints out
    base="$(benji_ls "labels[\"rbd-pool\"] == \"$pool\" and labels[\"rbd-image\"] == \"$image\" and snapshot == \"$prev\" and status == \"valid\"" |
        "$BENJI_VENV/bin/python" -c '
import json, sys
versions = sorted(json.load(sys.stdin)["versions"], key=lambda v: v["date"])
if versions:
    print(versions[-1]["uid"], versions[-1]["volume"])')" || die "benji ls failed"
    [ -n "$base" ] || die "no valid Benji version of $pool/$image@$prev to base a differential backup on"
    local base_uid="${base%% *}" name="${base#* }"
    hints="$(mktemp "${TMPDIR:-/tmp}/benji-hints.XXXXXX")"
    _benji_rbd diff --from-snap "$prev" --whole-object --format json "$pool/$image@$snap" > "$hints" ||
        { rm -f "$hints"; die "rbd diff of $pool/$image@$snap from $prev failed"; }
    out="$(benji_cli -m --log-level ERROR backup -s "$snap" -r "$hints" -f "$base_uid" \
        -l "rbd-pool=$pool" -l "rbd-image=$image" \
        "$(_benji_source_url "$pool" "$image" "$snap")" "$name")" ||
        { rm -f "$hints"; die "Benji's differential backup of $pool/$image@$snap failed"; }
    rm -f "$hints"
    _benji_uid_from_json <<<"$out"
}

# The rbd CLI as the configured Ceph user.
_benji_rbd() {
    local conf user
    conf="$(awk '$1 == "cephConfigFile:" {print $2}' "$BENJI_DIR/benji.yaml")"
    user="$(awk '$1 == "clientIdentifier:" {print $2}' "$BENJI_DIR/benji.yaml")"
    rbd -c "$conf" --id "$user" --keyring "$(cat "$BENJI_DIR/keyring-path")" "$@"
}
