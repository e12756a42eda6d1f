#!/usr/bin/env bash
# Start the console's processes in the foreground; Ctrl-C stops all of them, and the
# services that `make` started for this run.
set -uo pipefail
cd "$(dirname "$0")/../.."
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
# Local production-grade serving: debug off, but plain HTTP on loopback, and the demo users sign
# in without an authenticator app (OPS_REQUIRE_2FA=1 make run to try two-factor sign-in).
export DJANGO_DEBUG=${DJANGO_DEBUG:-0} OPS_HTTPS=${OPS_HTTPS:-0} OPS_REQUIRE_2FA=${OPS_REQUIRE_2FA:-0}
PY=.venv/bin/python
SIMULATE=${SIMULATE:-1}
mkdir -p .run
pids=()
sim_pid=""

# Wait up to $2 seconds for the processes in $1 (space-separated pids) to exit; 0 if they all did.
wait_gone() {
  local deadline=$((SECONDS + $2)) pid
  while [ $SECONDS -lt $deadline ]; do
    for pid in $1; do kill -0 "$pid" 2>/dev/null && { sleep 0.2; continue 2; }; done
    return 0
  done
  return 1
}

stop_all() {
  trap - INT TERM EXIT
  trap '' INT TERM  # a second Ctrl-C or SIGTERM must not cut the stopping short and orphan a child
  echo
  echo "Stopping Ops Console..."
  # The simulation first, while the web server still answers: it withdraws its waiting visits.
  if [ -n "$sim_pid" ]; then
    kill -INT "$sim_pid" 2>/dev/null
    wait_gone "$sim_pid" 10 || kill -KILL -- -"$sim_pid" 2>/dev/null
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  # A child that hangs past a few seconds is killed, with everything in its session.
  if ! wait_gone "${pids[*]}" 6; then
    for pid in "${pids[@]}"; do kill -KILL -- -"$pid" 2>/dev/null; done
  fi
  wait 2>/dev/null
  ops_console/bin/stop-started-services.sh
}
trap stop_all INT TERM EXIT

# Each process runs in its own session, so Ctrl-C reaches only this script, which then stops
# them in order (the simulation first, while the web server still answers).
# Access log to a file: the simulation's one-line summary owns the terminal. One port serves the
# console, the API and the websockets under /ws/ (uvicorn workers under gunicorn, ops_console/asgi.py).
setsid .venv/bin/gunicorn ops_console.asgi:application -k uvicorn_worker.UvicornWorker \
  --bind "$HOST:$PORT" --workers "${WEB_CONCURRENCY:-3}" --access-logfile .run/access.log --graceful-timeout 5 &
pids+=($!)

# The push relay: every visit transition to the apps' and the live queues' websockets.
setsid $PY manage.py push_relay &
pids+=($!)

# The routing worker and its hot standby (takes over within seconds if the leader dies).
setsid $PY manage.py run_router --name router-1 &
pids+=($!)
setsid $PY manage.py run_router --name router-2 &
pids+=($!)

# The oversight worker (queue history, alerts, their e-mail and webhook) and its standby.
setsid $PY manage.py run_oversight --name oversight-1 &
pids+=($!)
setsid $PY manage.py run_oversight --name oversight-2 &
pids+=($!)

# The search worker feeds Elasticsearch from the outbox (after a first full load of any index that
# does not exist yet); the default PostgreSQL search needs neither.
if [ -n "$($PY -c "import os;os.environ.setdefault('DJANGO_SETTINGS_MODULE','ops_console.settings');import django;django.setup();from django.conf import settings;print(settings.ELASTICSEARCH_URL or '')")" ]; then
  $PY manage.py search_index --rebuild --missing-only || echo "search index not built yet: changes wait in the outbox"
  setsid $PY manage.py search_worker &
  pids+=($!)
fi

admin_path=$($PY -c "import os;os.environ.setdefault('DJANGO_SETTINGS_MODULE','ops_console.settings');import django;django.setup();from django.conf import settings;print(settings.OPS_ADMIN_PATH)")
password=$($PY -c "import os;os.environ.setdefault('DJANGO_SETTINGS_MODULE','ops_console.settings');import django;django.setup();from django.conf import settings;print(settings.OPS_DEMO_PASSWORD)")
cat <<MSG

  Ops Console: http://$HOST:$PORT/$admin_path

  Demo logins (password: $password)
    support   Support agent  (view-only, support cases)
    clinops   Clinical ops   (providers and licenses)
    engineer  Engineer       (view-only, profiling)
    lead      Ops lead       (everything but deleting records)

  Ctrl-C stops everything this command started.
  Web access log: .run/access.log$( [ "$SIMULATE" = 1 ] && echo "; a gentle traffic simulation runs (SIMULATE=0 turns it off)")

MSG
if [ "$SIMULATE" = 1 ]; then
  setsid $PY manage.py simulate_traffic --gentle --base-url "http://$HOST:$PORT" &
  sim_pid=$!
fi
wait -n "${pids[@]}"
