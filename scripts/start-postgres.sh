#!/usr/bin/env bash
# Starts the PostgreSQL cluster the tests run on (Debian's packages; there is no systemd): a
# cluster of its own, `enomalism-test` on 127.0.0.1:5433, tuned for speed rather than
# durability (it only ever holds test data), with a role `enomalism` (password `enomalism`)
# that may create databases. Prints the SQLAlchemy URL the tests take in ENOMALISM_TEST_POSTGRES.
# Safe to run again: an existing cluster is only started.
set -euo pipefail
# Everything but the URL goes to stderr: the caller reads stdout (pg_ctlcluster says things
# like "Removed stale pid file." when a machine was stopped with the cluster running).
exec 3>&1 1>&2
command -v pg_createcluster >/dev/null || { echo "start-postgres: postgresql is not installed" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "start-postgres: needs root (it creates and starts a cluster)" >&2; exit 1; }
VER=$(ls /usr/lib/postgresql | sort -V | tail -1)
NAME=enomalism-test
PORT=5433
# Its socket directory (systemd-tmpfiles makes it on a machine that boots with systemd).
mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
# The listing is read whole before it is matched (a `| grep -q` under pipefail can fail by SIGPIPE).
clusters=$(pg_lsclusters -h | awk '{print $1 "/" $2}')
if ! grep -qx "$VER/$NAME" <<<"$clusters"; then
  pg_createcluster -q "$VER" "$NAME" --port "$PORT" \
    -o max_connections=500 -o fsync=off \
    -o synchronous_commit=off -o full_page_writes=off -o shared_buffers=256MB
fi
ready() { runuser -u postgres -- psql -p "$PORT" -qAtc "SELECT 1" >/dev/null 2>&1; }
if ! ready; then
  # "Already running" is not an error here: readiness below decides. The daemon must not
  # inherit fd 3, or the caller's $(...) would wait for it to exit.
  pg_ctlcluster "$VER" "$NAME" start 3>&- || true
  for _ in $(seq 1 300); do ready && break; sleep 0.1; done
fi
ready || { echo "start-postgres: cluster $VER/$NAME did not come up;" \
                "see /var/log/postgresql/postgresql-$VER-$NAME.log"; exit 1; }
runuser -u postgres -- psql -p "$PORT" -qAt >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'enomalism') THEN
    CREATE ROLE enomalism LOGIN CREATEDB PASSWORD 'enomalism';
  END IF;
END $$;
-- DROP DATABASE ... WITH (FORCE) of a test database must also end an autovacuum worker in it
GRANT pg_signal_backend TO enomalism;
SQL
echo "postgresql+psycopg://enomalism:enomalism@127.0.0.1:$PORT" >&3
