#!/usr/bin/env bash
# Installs what the tests and the embedded database need: PostgreSQL server binaries with pgvector.
# Does nothing when a server whose share dir has extension/vector.control is already installed.
# Debian 12: PostgreSQL 15 from bookworm, pgvector built from Debian 13's source package.
# Debian 13: PostgreSQL 17 with its packaged pgvector (trixie ships no PostgreSQL 15 headers).
set -euo pipefail

have_vector() {
  for v in 15 16 17; do
    if [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && [ -f "/usr/share/postgresql/$v/extension/vector.control" ]; then
      echo "provision: PostgreSQL $v with pgvector is installed"; return 0
    fi
  done
  return 1
}

have_vector && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
debian_major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 0)

if [ "$debian_major" = "13" ] || grep -q trixie /etc/debian_version 2>/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq postgresql-17 postgresql-17-pgvector >/dev/null
else
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq postgresql-15 postgresql-server-dev-15 dpkg-dev build-essential >/dev/null
  if [ ! -f /etc/apt/sources.list.d/trixie-src.sources ]; then
    $SUDO tee /etc/apt/sources.list.d/trixie-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
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

have_vector || { echo "provision: pgvector is still missing after install" >&2; exit 1; }
