#!/usr/bin/env bash
# A real MLflow tracking server for lamo-sweep: PostgreSQL backend store + MLflow server with proxied
# artifacts. MLflow binds loopback unless given a host; beyond loopback it runs MLflow's basic-auth app.
# Docker instead: docker/README.md.
#
#   scripts/tracking_server.sh start    # prints the tracking URI (last line of stdout), e.g. http://127.0.0.1:5000
#   scripts/tracking_server.sh status   # exit 0 when PostgreSQL and MLflow both answer, 1 otherwise
#   scripts/tracking_server.sh stop     # stops MLflow, then PostgreSQL; leaves no process behind
#   lamo-sweep sweeps/quickstart.yaml --tracking-uri http://127.0.0.1:5000
#
# A server every node of a cluster reaches (a login node's address, or 0.0.0.0 for all interfaces):
#   export MLFLOW_AUTH_ADMIN_PASSWORD=...   # >= 12 characters; MLflow's own variable, read on the first start
#   scripts/tracking_server.sh start --host 0.0.0.0      # prints http://<this host's name>:5000
#   # on the driver: MLFLOW_TRACKING_URI=http://login01:5000 MLFLOW_TRACKING_USERNAME=admin
#   #                MLFLOW_TRACKING_PASSWORD=...; lamo-sweep forwards every MLFLOW_* variable to the workers
#
# Settings (environment variables or flags; the same ones must be given to start, status and stop):
#   LAMO_TRACKING_DIR  --dir D      state: pid files, logs, pgpass, artifacts  (default <LAMO_STORAGE>/tracking)
#   LAMO_STORAGE                    project storage                             (default ./lamo_runs)
#   LAMO_PG_DIR        --pg-dir D   PostgreSQL cluster directory                (default <LAMO_TRACKING_DIR>/pg)
#   LAMO_MLFLOW_HOST   --host H     address MLflow binds                        (default 127.0.0.1)
#   LAMO_MLFLOW_PORT   --port P     MLflow port                                 (default 5000)
#   LAMO_MLFLOW_AUTH=1 --auth       basic auth on loopback too                  (always on beyond loopback)
#   LAMO_MLFLOW_ALLOWED_HOSTS  --allowed-hosts LIST   Host headers MLflow accepts beyond loopback (default:
#                                   this machine's names and addresses, loopback, private ranges)
#   LAMO_PG_PORT       --pg-port Q  PostgreSQL port                             (default 5433)
#   LAMO_MLFLOW        --mlflow X   the mlflow executable                       (default .venv/bin/mlflow, then PATH)
#   LAMO_START_TIMEOUT              seconds to wait for /health                 (default 120)
#
# Basic auth (MLflow docs, "MLflow Authentication"; `mlflow server --app-name basic-auth`): needs the
# `mlflow[auth]` extra (Flask-WTF) in MLflow's environment, and the admin's password in
# MLFLOW_AUTH_ADMIN_PASSWORD (user MLFLOW_AUTH_ADMIN_USERNAME, default admin): start refuses without
# one, with one under 12 characters, or with the default that old MLflow versions shipped. The password
# creates the admin on the first start only (later changes: MLflow's update-password API). Users,
# permissions and the admin live in the PostgreSQL database `mlflow_auth`; the configuration
# (<LAMO_TRACKING_DIR>/basic_auth.ini, default_permission READ) and the Flask secret key
# (<LAMO_TRACKING_DIR>/flask_secret, random, kept across restarts) are mode 600. Plain HTTP sends the
# password in clear text: keep the port on the cluster's private network, or put TLS in front.
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
host=${LAMO_MLFLOW_HOST:-127.0.0.1}
auth=${LAMO_MLFLOW_AUTH:-0}
allowed_hosts=${LAMO_MLFLOW_ALLOWED_HOSTS:-}
pgport=${LAMO_PG_PORT:-5433}
mlflow_bin=${LAMO_MLFLOW:-}
start_timeout=${LAMO_START_TIMEOUT:-120}
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) state=$2; shift 2 ;;
    --pg-dir) pgdir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --auth) auth=1; shift ;;
    --allowed-hosts) allowed_hosts=$2; shift 2 ;;
    --pg-port) pgport=$2; shift 2 ;;
    --mlflow) mlflow_bin=$2; shift 2 ;;
    *) echo "tracking_server.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
case "$cmd" in start|stop|status) ;; *)
  echo "usage: scripts/tracking_server.sh start|stop|status [--host H] [--auth] [--allowed-hosts LIST] [--dir D] [--pg-dir D] [--port P] [--pg-port Q]" >&2
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
[[ "$host" =~ ^[A-Za-z0-9.:_-]+$ ]] || { echo "tracking_server.sh: bad --host '$host'" >&2; exit 2; }
case "$auth" in 0|1) ;; *) echo "tracking_server.sh: LAMO_MLFLOW_AUTH must be 0 or 1, got '$auth'" >&2; exit 2 ;; esac
# loopback: 127.0.0.0/8, ::1, localhost. Anything else is reachable from other machines: basic auth.
case "$host" in 127.*|::1|localhost) loopback=1 ;; *) loopback=0; auth=1 ;; esac
# where this machine reaches the server (/health), and the URI it prints for the clients
bracket() { case "$1" in *:*) echo "[$1]" ;; *) echo "$1" ;; esac; }
case "$host" in
  0.0.0.0) check_host=127.0.0.1; public_host=$(hostname -f 2>/dev/null || hostname) ;;
  ::) check_host=::1; public_host=$(hostname -f 2>/dev/null || hostname) ;;
  *) check_host=$host; public_host=$host ;;
esac
check_uri=http://$(bracket "$check_host"):$port
uri=http://$(bracket "$public_host"):$port
db_user=lamo
db_name=mlflow
auth_db=mlflow_auth
auth_ini=$state/basic_auth.ini
flask_secret=$state/flask_secret

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
health() { curl -fsS --max-time 2 "$check_uri/health" >/dev/null 2>&1; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

find_mlflow() {
  if [ -n "$mlflow_bin" ]; then echo "$mlflow_bin"; return; fi
  if [ -x "$repo/.venv/bin/mlflow" ]; then echo "$repo/.venv/bin/mlflow"; return; fi
  command -v mlflow || die "mlflow not found: run scripts/bootstrap.sh or set LAMO_MLFLOW"
}

# --- basic auth (MLflow docs, "MLflow Authentication") ---------------------------------------------
# Refuse before anything starts: no admin password, a short one, the default of old MLflow versions, or
# an MLflow without the auth extra.
check_auth_settings() {
  local why pw=${MLFLOW_AUTH_ADMIN_PASSWORD:-} py
  if [ "$loopback" = 1 ]; then why="--auth / LAMO_MLFLOW_AUTH=1"; else why="--host $host is not loopback"; fi
  [ -n "$pw" ] || die "basic auth is on ($why) and MLFLOW_AUTH_ADMIN_PASSWORD is not set: export the admin's
  password (>= 12 characters; user MLFLOW_AUTH_ADMIN_USERNAME, default admin) before start, or bind loopback
  (--host 127.0.0.1, the default) without --auth"
  [ "${#pw}" -ge 12 ] || die "MLFLOW_AUTH_ADMIN_PASSWORD has ${#pw} characters; MLflow's basic auth needs >= 12"
  [ "$pw" != password1234 ] || die "MLFLOW_AUTH_ADMIN_PASSWORD is the default admin password that old MLflow
  versions shipped in basic_auth.ini (GHSA-gq3w-7jj3-x7gr): choose another"
  py=$(dirname "$1")/python
  [ -x "$py" ] || py=python3
  "$py" -c "import flask_wtf" >/dev/null 2>&1 || die "MLflow's basic-auth app needs Flask-WTF, which the
  environment of $1 lacks: install MLflow's auth extra there (pip install \"mlflow[auth]==$("$py" -c \
  'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null || echo VERSION)\")"
}

# The auth app's configuration, its store (a database of this PostgreSQL) and a stable Flask secret key.
prepare_auth() {
  export PGPASSFILE=$pgpass
  if ! "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U "$db_user" -d postgres -tAc \
       "SELECT 1 FROM pg_database WHERE datname='$auth_db'" | grep -q 1; then
    "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U "$db_user" "$auth_db" || die "createdb $auth_db failed"
  fi
  [ -s "$flask_secret" ] || ( umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$flask_secret" )
  ( umask 077; printf '%s\n' "[mlflow]" "default_permission = READ" \
      "database_uri = postgresql+psycopg2://$db_user@127.0.0.1:$pgport/$auth_db" \
      "admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}" \
      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth" >"$auth_ini" )
}

# Host headers MLflow's security middleware accepts: given, or (beyond loopback) this machine's names and
# addresses, loopback and the private ranges (MLflow's own default for a server without --allowed-hosts).
default_allowed_hosts() {
  local names=(localhost 127.0.0.1 "$(hostname)" "$(hostname -f 2>/dev/null || true)") out="" n
  names+=($(hostname -I 2>/dev/null || true))
  case "$host" in 0.0.0.0|::) ;; *) names+=("$host") ;; esac
  for n in "${names[@]}"; do
    [ -n "$n" ] || continue
    n=$(bracket "$n")
    case ",$out" in *",$n,"*) continue ;; esac
    out+="$n,$n:*,"
  done
  echo "${out}10.*,192.168.*,$(printf '172.%s.*,' $(seq 16 31))fc00:*,fd00:*"
}

# --- start ----------------------------------------------------------------------------------------
start() {
  local t0 t1 mlflow
  t0=$(date +%s.%N)
  mkdir -p "$logs" "$state/artifacts"
  command -v curl >/dev/null || die "curl is needed to check /health"
  mlflow=$(find_mlflow)
  if [ "$auth" = 1 ]; then check_auth_settings "$mlflow"; fi
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
  if (exec 3<>"/dev/tcp/$check_host/$port") 2>/dev/null; then
    die "port $port is already in use: choose another with --port / LAMO_MLFLOW_PORT"
  fi
  local extra=()
  if [ "$auth" = 1 ]; then
    prepare_auth
    extra+=(--app-name basic-auth)
  fi
  if [ "$loopback" = 0 ]; then
    extra+=(--allowed-hosts "${allowed_hosts:-$(default_allowed_hosts)}")
  elif [ -n "$allowed_hosts" ]; then
    extra+=(--allowed-hosts "$allowed_hosts")
  fi
  # secrets reach the server through its environment only, never a command line (the subshell execs
  # setsid, which execs mlflow: $! is the server's pid)
  (
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false PGPASSFILE=$pgpass
    if [ "$auth" = 1 ]; then
      export MLFLOW_AUTH_CONFIG_PATH=$auth_ini
      MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$flask_secret"); export MLFLOW_FLASK_SERVER_SECRET_KEY
    fi
    exec setsid "$mlflow" server \
      --backend-store-uri "postgresql+psycopg2://$db_user@127.0.0.1:$pgport/$db_name" \
      --artifacts-destination "$state/artifacts" \
      --host "$host" --port "$port" --workers 1 "${extra[@]}"
  ) >"$logs/mlflow.log" 2>&1 </dev/null &
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
  log "MLflow at $uri (bound to $host$([ "$auth" = 1 ] && echo ", basic auth: clients set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"); backend postgresql on 127.0.0.1:$pgport, artifacts $state/artifacts); started in $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s"
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
