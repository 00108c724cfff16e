#!/usr/bin/env bash
# Installs what the tests and the embedded database need: PostgreSQL server binaries with pgvector,
# and PgBouncer (the reliability tests run migrations against one). Skips what is already there.
# Debian 12: PostgreSQL 15 from bookworm, pgvector built from Debian 13's source package, fetched
# from the same mirror the machine's own apt sources name (no package host is written here).
# Debian 13: PostgreSQL 17 with its packaged pgvector (trixie ships no PostgreSQL 15 headers).
set -euo pipefail

have_vector() {
  for v in 15 16 17; do
    if [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && [ -f "/usr/share/postgresql/$v/extension/vector.control" ]; then
      return 0
    fi
  done
  return 1
}
have_pgbouncer() { command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; }

if have_vector && have_pgbouncer; then
  echo "provision: PostgreSQL with pgvector and PgBouncer are installed"; exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "provision: run as root, or install PostgreSQL 15 (or 17) with pgvector and pgbouncer yourself" >&2; exit 2
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "provision: no apt-get here: install PostgreSQL 15 (or 17) with pgvector and pgbouncer yourself" >&2; exit 2
fi
export DEBIAN_FRONTEND=noninteractive
debian_major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 0)

# The Debian mirror this machine already uses: the first URIs: line of a deb822 sources file, else
# the first "deb" line of a one-line sources file.
debian_mirror() {
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n 1)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | grep -v -- '-security' | head -n 1)
  echo "$uri"
}

$SUDO apt-get update -qq
if [ "$debian_major" = "13" ] || grep -q trixie /etc/debian_version 2>/dev/null; then
  $SUDO apt-get install -y -qq postgresql-17 postgresql-17-pgvector pgbouncer >/dev/null
else
  $SUDO apt-get install -y -qq postgresql-15 pgbouncer >/dev/null
  if ! have_vector; then
    $SUDO apt-get install -y -qq postgresql-server-dev-15 dpkg-dev build-essential >/dev/null
    if [ ! -f /etc/apt/sources.list.d/trixie-src.sources ]; then
      mirror=$(debian_mirror)
      if [ -z "$mirror" ]; then
        echo "provision: no Debian mirror found in /etc/apt/sources*: install pgvector for PostgreSQL 15 yourself" >&2; exit 2
      fi
      printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" \
        | $SUDO tee /etc/apt/sources.list.d/trixie-src.sources >/dev/null
      $SUDO apt-get update -qq
    fi
    build=$(mktemp -d)
    (
      cd "$build"
      apt-get source -qq pgvector >/dev/null 2>&1
      cd pgvector-*/
      make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
      $SUDO make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
    )
    rm -rf "$build"
  fi
fi
# The Debian package starts a pgbouncer service on 6432; the tests start their own.
$SUDO systemctl disable --now pgbouncer >/dev/null 2>&1 || $SUDO service pgbouncer stop >/dev/null 2>&1 || true

have_vector || { echo "provision: pgvector is still missing after install" >&2; exit 1; }
have_pgbouncer || { echo "provision: pgbouncer is still missing after install" >&2; exit 1; }
echo "provision: PostgreSQL with pgvector and PgBouncer are installed"
