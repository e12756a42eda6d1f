#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1. Start them if stopped; on a fresh
# Debian/Ubuntu box, install them with apt when running as root. Prints what it started to
# $OPS_RUN_DIR/started-services (.run/ by default) so `make run` can stop exactly those on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
run_dir=${OPS_RUN_DIR:-.run}
mkdir -p "$run_dir"
: > "$run_dir/started-services"

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-services: $* missing and not root; install it (apt-get install $*) and retry." >&2
    exit 1
  fi
  echo "ensure-services: installing $* with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_postgres() {
  command -v pg_isready >/dev/null && pg_up && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql postgresql-contrib
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  echo "ensure-services: starting PostgreSQL $version" >&2
  if [ "$(id -u)" = 0 ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  else
    pg_ctlcluster "$version" main start
  fi
  echo "postgres $version" >> "$run_dir/started-services"
  for _ in $(seq 1 30); do pg_up && return 0; sleep 1; done
  echo "ensure-services: PostgreSQL did not come up on 127.0.0.1:5432" >&2
  exit 1
}

ensure_redis() {
  command -v redis-cli >/dev/null && redis_up && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  echo "ensure-services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  echo "redis" >> "$run_dir/started-services"
  for _ in $(seq 1 30); do redis_up && return 0; sleep 0.5; done
  echo "ensure-services: Redis did not come up on 127.0.0.1:6379" >&2
  exit 1
}

ensure_postgres
ensure_redis
# The tests connect as the current OS user through trust auth; make sure that role exists.
if [ "$(id -u)" = 0 ] && ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname='$(whoami)'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -qc "CREATE ROLE \"$(whoami)\" SUPERUSER LOGIN"
fi
echo "ensure-services: PostgreSQL and Redis are up"
