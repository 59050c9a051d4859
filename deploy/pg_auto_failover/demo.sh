#!/usr/bin/env bash
# A pg_auto_failover formation on this machine for trying jeton through a failover: a
# monitor and two PostgreSQL nodes with synchronous replication, in a folder of their own,
# on ports 6000-6002. Needs Debian's postgresql-15-auto-failover and pg-auto-failover-cli;
# run as root (the servers run as the postgres user) or as postgres.
#
#   bash deploy/pg_auto_failover/demo.sh start     # prints the multi-host URL for jeton
#   bash deploy/pg_auto_failover/demo.sh failover  # pg_autoctl perform failover
#   bash deploy/pg_auto_failover/demo.sh stop      # stops everything, removes the folder
set -euo pipefail

dir=${PGAF_DIR:-/tmp/jeton-pgaf}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- env PATH="$bin:$PATH" HOME="$dir" XDG_CONFIG_HOME="$dir/.config" XDG_DATA_HOME="$dir/.local" bash -c "cd '$dir' && $*"
  else
    env PATH="$bin:$PATH" HOME="$dir" XDG_CONFIG_HOME="$dir/.config" XDG_DATA_HOME="$dir/.local" bash -c "cd '$dir' && $*"
  fi
}
monitor_url="postgres://autoctl_node@127.0.0.1:6000/pg_auto_failover?sslmode=disable"

# Waits (at most a minute) until the command in $1 succeeds.
wait_for() {
  for _ in $(seq 1 60); do
    if eval "$1" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "gave up waiting for: $1" >&2
  tail -n 20 "$dir"/*.log >&2 || true
  exit 1
}

start() {
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  as_postgres "pg_autoctl create monitor --pgdata monitor --pgport 6000 --hostname 127.0.0.1 \
    --auth trust --no-ssl --run >monitor.log 2>&1 &"
  wait_for 'as_postgres "pg_autoctl show state --pgdata monitor"' 
  for n in 1 2; do
    as_postgres "pg_autoctl create postgres --pgdata node$n --pgport 600$n --hostname 127.0.0.1 \
      --auth trust --no-ssl --dbname jeton --monitor '$monitor_url' --run >node$n.log 2>&1 &"
    # One node at a time: the second joins as the first's standby.
    wait_for "as_postgres 'pg_autoctl show state --pgdata monitor' | grep -q 'node_$n .*\\(primary\\|secondary\\|single\\)'"
  done
  # With one standby, pg_auto_failover replicates synchronously to it already
  # (synchronous_standby_names = 'ANY 1 (pgautofailover_standby_2)'): it holds every
  # acknowledged change.
  as_postgres "pg_autoctl show state --pgdata monitor"
  echo
  # pg_autoctl's URI names no user: jeton's is added (here the servers' superuser).
  as_postgres "pg_autoctl show uri --formation default --pgdata monitor" | sed 's|postgres://|postgres://postgres@|'

}

case "${1:-}" in
  start) start ;;
  failover) as_postgres "pg_autoctl perform failover --pgdata monitor" ;;
  state) as_postgres "pg_autoctl show state --pgdata monitor" ;;
  stop)
    for n in node2 node1 monitor; do as_postgres "pg_autoctl stop --pgdata $n" 2>/dev/null || true; done
    sleep 2
    pkill -u postgres -f "pg_autoctl.*$dir" 2>/dev/null || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|failover|state|stop" >&2; exit 2 ;;
esac
