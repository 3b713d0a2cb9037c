#!/usr/bin/env bash
# A real MLflow tracking server for lamo-sweep: PostgreSQL backend store + MLflow server with proxied
# artifacts, both on loopback only. For a cluster see docker/README.md.
#
#   scripts/tracking_server.sh start    # prints the tracking URI (last line of stdout), e.g. http://127.0.0.1:5000
#   scripts/tracking_server.sh status   # exit 0 when PostgreSQL and MLflow both answer, 1 otherwise
#   scripts/tracking_server.sh stop     # stops MLflow, then PostgreSQL; leaves no process behind
#   lamo-sweep sweeps/quickstart.yaml --tracking-uri http://127.0.0.1:5000
#
# Settings (environment variables or flags; the same ones must be given to start, status and stop):
#   LAMO_TRACKING_DIR  --dir D      state: pid files, logs, pgpass, artifacts  (default <LAMO_STORAGE>/tracking)
#   LAMO_STORAGE                    project storage                             (default ./lamo_runs)
#   LAMO_PG_DIR        --pg-dir D   PostgreSQL cluster directory                (default <LAMO_TRACKING_DIR>/pg)
#   LAMO_MLFLOW_PORT   --port P     MLflow port                                 (default 5000)
#   LAMO_PG_PORT       --pg-port Q  PostgreSQL port                             (default 5433)
#   LAMO_MLFLOW        --mlflow X   the mlflow executable                       (default .venv/bin/mlflow, then PATH)
#   LAMO_START_TIMEOUT              seconds to wait for /health                 (default 120)
#
# PostgreSQL is installed with apt-get when missing (root only). root cannot run PostgreSQL, so as root
# the cluster belongs to the `postgres` system user (created by Debian's package); every path to the
# cluster directory must then be traversable by that user (a directory under /tmp or /var/tmp works;
# pytest's tmp_path under /tmp/pytest-of-root does not). The database user `lamo` gets a random
# password kept in <LAMO_TRACKING_DIR>/pgpass (mode 600) and read by libpq through PGPASSFILE, so it
# never appears on a command line. PostgreSQL listens on 127.0.0.1 only and has no Unix socket;
# MLflow binds 127.0.0.1 and runs with one worker and MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false.
set -euo pipefail

cmd=${1:-}
[ $# -gt 0 ] && shift
repo=$(cd "$(dirname "$0")/.." && pwd)
state=${LAMO_TRACKING_DIR:-}
pgdir=${LAMO_PG_DIR:-}
port=${LAMO_MLFLOW_PORT:-5000}
pgport=${LAMO_PG_PORT:-5433}
mlflow_bin=${LAMO_MLFLOW:-}
start_timeout=${LAMO_START_TIMEOUT:-120}
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) state=$2; shift 2 ;;
    --pg-dir) pgdir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --pg-port) pgport=$2; shift 2 ;;
    --mlflow) mlflow_bin=$2; shift 2 ;;
    *) echo "tracking_server.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
case "$cmd" in start|stop|status) ;; *)
  echo "usage: scripts/tracking_server.sh start|stop|status [--dir D] [--pg-dir D] [--port P] [--pg-port Q]" >&2
  exit 2 ;;
esac
for p in "$port" "$pgport"; do
  [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || { echo "tracking_server.sh: bad port '$p'" >&2; exit 2; }
done
state=${state:-${LAMO_STORAGE:-$PWD/lamo_runs}/tracking}
mkdir -p "$state"
state=$(cd "$state" && pwd)
pgdir=${pgdir:-$state/pg}
case "$pgdir" in /*) ;; *) pgdir=$PWD/$pgdir ;; esac
logs=$state/logs
mlflow_pid=$state/mlflow.pid
pgpass=$state/pgpass
uri=http://127.0.0.1:$port
db_user=lamo
db_name=mlflow

log() { echo "[tracking] $*" >&2; }
die() { echo "[tracking] error: $*" >&2; exit 1; }

# --- PostgreSQL binaries --------------------------------------------------------------------------
find_pg_bin() {
  local d
  if [ -n "${LAMO_PG_BIN:-}" ]; then echo "$LAMO_PG_BIN"; return 0; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  d=$(command -v pg_ctl 2>/dev/null || true)
  [ -n "$d" ] && [ -x "$(dirname "$d")/initdb" ] && { dirname "$d"; return 0; }
  return 1
}
pgbin=$(find_pg_bin || true)
if [ -z "$pgbin" ] && [ "$cmd" = start ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "PostgreSQL not found: installing Debian's postgresql with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >"$state/apt.log" 2>&1 \
      || { apt-get update -q >>"$state/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >>"$state/apt.log" 2>&1; } \
      || die "apt-get install postgresql failed (log: $state/apt.log)"
    pgbin=$(find_pg_bin) || die "postgresql installed but initdb/pg_ctl not found"
  else
    die "PostgreSQL (initdb, pg_ctl) not found: install it (Debian: apt-get install postgresql) or set LAMO_PG_BIN"
  fi
fi

# root cannot run PostgreSQL: run its programs as the unprivileged `postgres` system user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_running() { [ -n "$pgbin" ] && [ -f "$pgdir/PG_VERSION" ] && as_pg "$pgbin/pg_ctl" -D "$pgdir" status >/dev/null 2>&1; }
health() { curl -fsS --max-time 2 "$uri/health" >/dev/null 2>&1; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

find_mlflow() {
  if [ -n "$mlflow_bin" ]; then echo "$mlflow_bin"; return; fi
  if [ -x "$repo/.venv/bin/mlflow" ]; then echo "$repo/.venv/bin/mlflow"; return; fi
  command -v mlflow || die "mlflow not found: run scripts/bootstrap.sh or set LAMO_MLFLOW"
}

# --- start ----------------------------------------------------------------------------------------
start() {
  local t0 t1 mlflow
  t0=$(date +%s.%N)
  mkdir -p "$logs" "$state/artifacts"
  command -v curl >/dev/null || die "curl is needed to check /health"
  if pid_alive "$mlflow_pid" && health; then
    log "already running (pid $(cat "$mlflow_pid"))"; echo "$uri"; return 0
  fi
  # the PostgreSQL cluster: created once, owned by the user that runs it
  if [ ! -f "$pgdir/PG_VERSION" ]; then
    mkdir -p "$pgdir"
    chmod 700 "$pgdir"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdir"
    as_pg test -w "$pgdir" || die "user postgres cannot write $pgdir (a parent directory is not traversable by it);
  set LAMO_PG_DIR to a directory such as /var/tmp/lamo-pg"
    local pw pwfile
    pw=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    pwfile=$(mktemp)
    printf '%s\n' "$pw" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    ( umask 077; printf '127.0.0.1:%s:*:%s:%s\n' "$pgport" "$db_user" "$pw" >"$pgpass" )
    as_pg "$pgbin/initdb" -D "$pgdir" -U "$db_user" --pwfile="$pwfile" --auth=scram-sha-256 \
      --encoding=UTF8 --no-locale >"$logs/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; die "initdb failed (log: $logs/initdb.log)"; }
    rm -f "$pwfile"
    log "initialised PostgreSQL cluster in $pgdir"
  fi
  [ -f "$pgpass" ] || die "$pgpass is missing (the database password); remove $pgdir to start afresh"
  # the port may change between starts: rewrite the pgpass line for this port
  sed -i -E "s/^127\.0\.0\.1:[0-9]+:/127.0.0.1:$pgport:/" "$pgpass"
  if ! pg_running; then
    as_pg "$pgbin/pg_ctl" -D "$pgdir" -l "$pgdir/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $pgport -c unix_socket_directories='' -c max_connections=100" \
      start >/dev/null || die "PostgreSQL did not start (log: $pgdir/postgres.log)"
  fi
  export PGPASSFILE=$pgpass
  if ! "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U "$db_user" -d postgres -tAc \
       "SELECT 1 FROM pg_database WHERE datname='$db_name'" | grep -q 1; then
    "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U "$db_user" "$db_name" || die "createdb $db_name failed"
  fi
  # MLflow, in its own session so that stop can signal the whole process group
  mlflow=$(find_mlflow)
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use: choose another with --port / LAMO_MLFLOW_PORT"
  fi
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false PGPASSFILE=$pgpass setsid "$mlflow" server \
    --backend-store-uri "postgresql+psycopg2://$db_user@127.0.0.1:$pgport/$db_name" \
    --artifacts-destination "$state/artifacts" \
    --host 127.0.0.1 --port "$port" --workers 1 \
    >"$logs/mlflow.log" 2>&1 </dev/null &
  echo $! >"$mlflow_pid"
  local deadline=$(( $(date +%s) + start_timeout ))
  until health; do
    if ! pid_alive "$mlflow_pid"; then
      tail -n 20 "$logs/mlflow.log" >&2 || true
      stop_mlflow; die "mlflow server exited (log: $logs/mlflow.log)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      stop_mlflow; die "mlflow server did not answer $uri/health within ${start_timeout}s (log: $logs/mlflow.log)"
    fi
    sleep 0.3
  done
  t1=$(date +%s.%N)
  log "MLflow at $uri (backend postgresql on 127.0.0.1:$pgport, artifacts $state/artifacts); started in $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s"
  echo "$uri"
}

# --- stop -----------------------------------------------------------------------------------------
stop_mlflow() {
  [ -f "$mlflow_pid" ] || return 0
  local pid i
  pid=$(cat "$mlflow_pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$mlflow_pid"
}

stop() {
  stop_mlflow
  if pg_running; then
    as_pg "$pgbin/pg_ctl" -D "$pgdir" -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed (log: $pgdir/postgres.log)"
  fi
  log "stopped"
}

status() {
  local rc=0
  if pg_running; then log "PostgreSQL: running (127.0.0.1:$pgport, $pgdir)"; else log "PostgreSQL: stopped"; rc=1; fi
  if pid_alive "$mlflow_pid" && health; then
    log "MLflow: running at $uri (pid $(cat "$mlflow_pid"))"
  elif pid_alive "$mlflow_pid"; then log "MLflow: process $(cat "$mlflow_pid") alive but $uri/health does not answer"; rc=1
  else log "MLflow: stopped"; rc=1; fi
  return $rc
}

"$cmd"
