#!/usr/bin/env bash
# The README's first command, on a fresh Debian 12 or 13 machine: installs what is missing
# (PostgreSQL with pgvector and PgBouncer through scripts/provision.sh; the npm packages), then
# migrates the embedded local database (.pgdata/). Safe to run again: each step skips what is done.
# Exit 2, with one line saying what to install, when it cannot install something itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# Where Debian's packages put what the embedded database and the tests need.
pg_lib=/usr/lib/postgresql       # server binaries: <version>/bin/postgres
pg_share=/usr/share/postgresql   # extensions: <version>/extension/vector.control
pgbouncer_bin=/usr/sbin/pgbouncer

say() { echo "quickstart: $*"; }
fail() { echo "quickstart: $*" >&2; exit 2; }

# 1. Node.js 20.19 or newer (package.json's engines): named, not installed.
node_version=$(node -v 2>/dev/null || true)
node_version=${node_version#v}
node_major=${node_version%%.*}
node_minor=${node_version#*.}
node_minor=${node_minor%%.*}
if ! [[ $node_major =~ ^[0-9]+$ && $node_minor =~ ^[0-9]+$ ]] || (( node_major < 20 || (node_major == 20 && node_minor < 19) )); then
  fail "install Node.js 20.19 or newer with npm (found ${node_version:-none}; Debian 13: apt-get install nodejs npm), then run this again"
fi

# 2. PostgreSQL server binaries with pgvector, and PgBouncer (scripts/provision.sh installs both).
have_postgres() {
  local v
  for v in 15 16 17; do
    [ -x "$pg_lib/$v/bin/postgres" ] && [ -f "$pg_share/$v/extension/vector.control" ] && return 0
  done
  return 1
}
have_pgbouncer() { [ -x "$pgbouncer_bin" ] || command -v pgbouncer >/dev/null 2>&1; }
if have_postgres && have_pgbouncer; then
  say "PostgreSQL with pgvector and PgBouncer are installed"
else
  needs="install PostgreSQL 15 (or 17) with pgvector, and PgBouncer"
  command -v apt-get >/dev/null 2>&1 || fail "no apt-get here: $needs, then run this again"
  if [ "$(id -u)" -eq 0 ]; then
    bash scripts/provision.sh
  elif command -v sudo >/dev/null 2>&1; then
    sudo bash scripts/provision.sh
  else
    fail "not root and no sudo: run this as root, or $needs, then run this again"
  fi
fi

# 3. npm packages: `npm ci` when node_modules is missing or older than package-lock.json (npm
# records each install in node_modules/.package-lock.json).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  say "node_modules is up to date"
fi

# 4. Migrate the embedded database. A configured server (a *_URL in the environment or in .env)
# is left alone: deploying to it is a deliberate `npm run migration:run`.
url_vars='(DATABASE|AUTHDB|APIDB|ADMINDB)(_DIRECT)?_URL'
if env | grep -Eq "^${url_vars}=." || { [ -f .env ] && grep -Eq "^[[:space:]]*(export[[:space:]]+)?${url_vars}[[:space:]]*=[[:space:]]*[^[:space:]#]" .env; }; then
  say "a server is configured (*_URL in the environment or .env): not migrating it; run npm run migration:run yourself"
  exit 0
fi
npm run migration:run
