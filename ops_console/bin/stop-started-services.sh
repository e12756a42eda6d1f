#!/usr/bin/env bash
# Stop the services that ensure-services.sh started in this run (and only those): it lists them
# in $OPS_RUN_DIR/started-services (.run/ by default; the tests of run.sh point it elsewhere).
cd "$(dirname "$0")/../.."
started=${OPS_RUN_DIR:-.run}/started-services
[ -f "$started" ] || exit 0
while read -r name version; do
  case "$name" in
    postgres) pg_ctlcluster --skip-systemctl-redirect "$version" main stop 2>/dev/null || pg_ctlcluster "$version" main stop ;;
    redis) redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true ;;
  esac
done < "$started"
: > "$started"
