#!/usr/bin/env bash
# `make test`: the whole suite with the test servers on SQLite, then the API and transaction
# tests again with them on PostgreSQL. Starts the tests' PostgreSQL cluster when run as root
# (scripts/start-postgres.sh); otherwise give one in ENOMALISM_TEST_POSTGRES_URL.
# Arguments go to the first pytest run (e.g. scripts/test.sh -x -k remote).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${ENOMALISM_TEST_POSTGRES_URL:-}" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test: no PostgreSQL for the tests: run as root, or set ENOMALISM_TEST_POSTGRES_URL" \
         "(e.g. postgresql+psycopg://user:password@127.0.0.1:5432)" >&2
    exit 1
  fi
  ENOMALISM_TEST_POSTGRES_URL=$(scripts/start-postgres.sh)
  case "$ENOMALISM_TEST_POSTGRES_URL" in
    postgresql*://*) ;;
    *) echo "test: scripts/start-postgres.sh printed no URL: $ENOMALISM_TEST_POSTGRES_URL" >&2; exit 1 ;;
  esac
fi
export ENOMALISM_TEST_POSTGRES_URL
.venv/bin/python -m pytest --durations=20 "$@"
echo "test: the API and transaction tests again, on PostgreSQL"
ENOMALISM_TEST_DATABASE=postgresql .venv/bin/python -m pytest --durations=10 -m "not integration" \
  tests/api tests/jobs
