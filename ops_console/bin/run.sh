#!/usr/bin/env bash
# Start the console's processes in the foreground and keep them running, as a supervisor does in
# production: a web server, router or worker that exits is started again. Ctrl-C or SIGTERM stops
# all of them, and the services that `make` started for this run.
set -uo pipefail
cd "$(dirname "$0")/../.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
# Local production-grade serving: debug off, but plain HTTP on loopback, and the demo users sign
# in without an authenticator app (OPS_REQUIRE_2FA=1 make run to try two-factor sign-in).
export DJANGO_DEBUG=${DJANGO_DEBUG:-0} OPS_HTTPS=${OPS_HTTPS:-0} OPS_REQUIRE_2FA=${OPS_REQUIRE_2FA:-0}
PY=.venv/bin/python
SIMULATE=${SIMULATE:-1}
# The access log, and the list of services ensure-services.sh started (the tests use their own).
RUN_DIR=${OPS_RUN_DIR:-.run}
mkdir -p "$RUN_DIR"

BACKOFF_MAX=30       # longest wait before restarting a child that keeps exiting (1 s, doubling)
STEADY_SECONDS=60    # a child that ran this long before it exited is restarted after 1 s again
STARTUP_SECONDS=10   # an error exit this soon after a child's first start: it cannot start at all
STOP_SECONDS=6       # how long SIGTERM may take before SIGKILL
SIMULATION_STOP_SECONDS=10

declare -A command=() name_of=() started=() runs=() delay=() due=()
sim_pid=""
tick=""
stopping=""
exit_code=0

log() { printf '%(%H:%M:%S)T run.sh: %s\n' -1 "$*"; }

# Signals only ask the loop below to stop, wherever the script is: a child started a moment before
# is already on the list, and a second Ctrl-C cannot cut the stopping short and orphan a child.
trap 'stopping=1' INT TERM HUP QUIT
trap stop_all EXIT

# Name a command to keep running, and start it.
supervise() {
  local name=$1
  shift
  printf -v "command[$name]" '%q ' "$@"
  runs[$name]=0
  delay[$name]=1
  start "$name"
}

# Start a child in its own session: Ctrl-C reaches only this script, which stops the children in
# order, and the session's process group holds whatever the child starts (gunicorn's workers).
# Its output (one JSON object per line) goes to $RUN_DIR/<name>.log: the terminal keeps the banner,
# these lines and the simulation's summary.
start() {
  local name=$1
  eval "setsid ${command[$name]} >>\"\$RUN_DIR/$name.log\" 2>&1 &"
  name_of[$!]=$name
  started[$name]=$SECONDS
  runs[$name]=$((runs[$name] + 1))
  unset "due[$name]"
}

# A child exited: clear what it left in its session and plan its restart, or stop everything if
# it failed as it first started (a port in use, a missing migration, a bad setting).
on_exit() {
  local pid=$1 code=$2 name=${name_of[$1]} signal
  unset "name_of[$pid]"
  kill -KILL -- -"$pid" 2>/dev/null  # gunicorn's workers, if its master was killed
  local ran=$((SECONDS - started[$name])) why="code $code"
  [ "$code" -gt 128 ] && signal=$(kill -l "$code" 2>/dev/null) && why+=", SIG$signal"
  if [ "$name" = simulation ]; then
    # A demo load, not part of the console: restarted, it would leave its waiting visits behind
    # and start a new set; a crash there is a bug to read, not something to retry.
    log "the traffic simulation exited ($why); not restarted"
    sim_pid=""
  elif [ "${runs[$name]}" = 1 ] && [ "$code" -ge 1 ] && [ "$code" -le 128 ] && [ $ran -lt $STARTUP_SECONDS ]; then
    log "$name failed as it started ($why): stopping; the end of $RUN_DIR/$name.log:"
    tail -n 15 "$RUN_DIR/$name.log" | sed 's/^/    /'
    stopping=1 exit_code=1
  else
    [ $ran -ge $STEADY_SECONDS ] && delay[$name]=1
    log "$name exited ($why); restarting in ${delay[$name]} s"
    due[$name]=$((SECONDS + delay[$name]))
    delay[$name]=$((delay[$name] * 2 > BACKOFF_MAX ? BACKOFF_MAX : delay[$name] * 2))
  fi
}

# Wait up to $1 seconds for the process groups of the pids that follow to be empty; 0 if they are.
wait_gone() {
  local deadline=$((SECONDS + $1)) pid
  shift
  while [ $SECONDS -lt $deadline ]; do
    for pid; do kill -0 -- -"$pid" 2>/dev/null && { sleep 0.2; continue 2; }; done
    return 0
  done
  return 1
}

# Stop the simulation first, while the web server still answers: it withdraws its waiting visits.
# Then SIGTERM to every other child, and SIGKILL to the process group of any that hangs.
stop_all() {
  trap - EXIT
  echo
  log "Stopping Ops Console..."
  [ -n "$tick" ] && kill "$tick" 2>/dev/null
  if [ -n "$sim_pid" ]; then
    unset "name_of[$sim_pid]"
    kill -INT "$sim_pid" 2>/dev/null
    wait_gone "$SIMULATION_STOP_SECONDS" "$sim_pid" || kill -KILL -- -"$sim_pid" 2>/dev/null
  fi
  local pids=("${!name_of[@]}") pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  if ! wait_gone "$STOP_SECONDS" "${pids[@]}"; then
    for pid in "${pids[@]}"; do
      kill -0 -- -"$pid" 2>/dev/null || continue
      log "${name_of[$pid]} did not stop within $STOP_SECONDS s: killed"
      kill -KILL -- -"$pid" 2>/dev/null
    done
    wait_gone 2 "${pids[@]}"
  fi
  wait 2>/dev/null
  ops_console/bin/stop-started-services.sh
}

read_settings() {
  $PY -c "import os;os.environ.setdefault('DJANGO_SETTINGS_MODULE','ops_console.settings');import django;django.setup()
from django.conf import settings as s;print(s.ELASTICSEARCH_URL or '');print(s.OPS_ADMIN_PATH);print(s.OPS_DEMO_PASSWORD)"
}
{ read -r elasticsearch_url && read -r admin_path && read -r password; } < <(read_settings) || exit 1

# One port serves the console, the API and the websockets under /ws/ (uvicorn workers under
# gunicorn, ops_console/asgi.py); its master restarts its workers, this script restarts it.
# Its own lines in the console's format, and no access log of its own: the console logs one
# "ops.request" line per request with its request id (ops_console/gunicorn_conf.py).
supervise web .venv/bin/gunicorn -c ops_console/gunicorn_conf.py ops_console.asgi:application \
  -k uvicorn_worker.UvicornWorker --bind "$HOST:$PORT" --workers "${WEB_CONCURRENCY:-3}" --graceful-timeout 5 \
  --no-control-socket

# The push relay: every visit transition to the apps' and the live queues' websockets. Named, so
# that after a restart it relays what it had read but not yet relayed.
supervise push-relay $PY manage.py push_relay --name push-relay

# The routing worker and its hot standby (takes over within seconds if the leader dies, while
# the leader is restarted here to become the new standby).
supervise router-1 $PY manage.py run_router --name router-1
supervise router-2 $PY manage.py run_router --name router-2

# The oversight worker (queue history, alerts, their e-mail and webhook) and its standby.
supervise oversight-1 $PY manage.py run_oversight --name oversight-1
supervise oversight-2 $PY manage.py run_oversight --name oversight-2

# The job worker: background license imports, queued in PostgreSQL (django-tasks).
supervise jobs $PY manage.py run_jobs

# The search worker feeds Elasticsearch from the outbox (after a first full load of any index that
# does not exist yet); the default PostgreSQL search needs neither.
if [ -n "$elasticsearch_url" ]; then
  $PY manage.py search_index --rebuild --missing-only || echo "search index not built yet: changes wait in the outbox"
  supervise search-worker $PY manage.py search_worker
fi

cat <<MSG

  Ops Console: http://$HOST:$PORT/$admin_path

  Demo logins (password: $password)
    support   Support agent  (view-only, support cases)
    clinops   Clinical ops   (providers and licenses)
    engineer  Engineer       (view-only, profiling)
    lead      Ops lead       (everything but deleting records)

  A web server, router or worker that exits is restarted; Ctrl-C stops everything this command started.
  Logs, one JSON object per line: $RUN_DIR/<process>.log (web.log: every request)$( [ "$SIMULATE" = 1 ] && echo "; a gentle traffic simulation runs (SIMULATE=0 turns it off)")

MSG
if [ "$SIMULATE" = 1 ] && [ -z "$stopping" ]; then
  setsid $PY manage.py simulate_traffic --gentle --base-url "http://$HOST:$PORT" 2>>"$RUN_DIR/simulation.log" &
  sim_pid=$!
  name_of[$sim_pid]=simulation
  started[simulation]=$SECONDS
fi

# Restart the children whose backoff is over, then wait for one to exit, or a signal, or a second
# to pass (the tick: a signal that came just before the wait began is seen within it).
while [ -z "$stopping" ]; do
  for name in "${!due[@]}"; do
    [ "${due[$name]}" -le $SECONDS ] && start "$name"
  done
  [ -n "$tick" ] || { sleep 1 & tick=$!; }
  wait -n -p ended "${!name_of[@]}" "$tick"
  code=$?
  case ${ended:-} in
    "") ;;  # a signal: its trap set $stopping
    "$tick") tick="" ;;
    *) on_exit "$ended" "$code" ;;
  esac
done
stop_all
exit "$exit_code"
