#!/usr/bin/env bash
# Installs what `make demo` / `make test` need on a fresh Debian/Ubuntu machine, and nothing that is already there.
#   tools/bootstrap.sh system   PostgreSQL server binaries, PgBouncer, openssl, psql (apt-get, when missing)
#   tools/bootstrap.sh venv     .venv with requirements-dev.txt (re-installed when the requirements change), plus
#                               other pg8000 releases under .venv/pg8000/<version> for the driver fallback tests
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*" >&2; }

system() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || [ -n "${PG_BIN:-}" ] \
    || missing+=(postgresql)
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n); else
      say "missing system packages: ${missing[*]}; install them (apt-get install ${missing[*]}) and re-run"; exit 1
    fi
  fi
  say "installing ${missing[*]} with apt-get"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages start their own services; the template runs its own throwaway ones instead.
  if command -v service >/dev/null 2>&1; then
    "${sudo[@]}" service pgbouncer stop >/dev/null 2>&1 || true
  fi
}

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
  done
  say "Python >= 3.11 with venv not found; install python3 (>= 3.11) and python3-venv, or set PYTHON=/path/to/python"
  exit 1
}

# pg8000 releases the suite runs the handlers on besides the pinned one: one inside the pipelined driver's tested
# range and one outside it (the stock dialect must take over). Keep in step with tests/integration/test_driver_fallback.py.
OTHER_PG8000="1.31.4 1.30.5"

venv() {
  local stamp=.venv/.installed
  local wanted
  wanted=$( (cat requirements.txt requirements-dev.txt; echo "$OTHER_PG8000") | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x .venv/bin/python ]; then return 0; fi
  if [ ! -x .venv/bin/python ]; then
    local python; python=$(find_python)
    say "creating .venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv .venv
  fi
  say "installing requirements-dev.txt into .venv"
  # Some machines' pip config lists local mirrors that may be absent; pip warns per package, which is noise.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  local release
  for release in $OTHER_PG8000; do
    # These releases call scramp.make_channel_binding, which scramp 1.5 removed: install the scramp they were
    # released with beside them; python-dateutil (and asn1crypto) come from .venv.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
      --target ".venv/pg8000/$release" "pg8000==$release" "scramp<1.5" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  done
  echo "$wanted" > "$stamp"
}

case "${1:-}" in
  system) system ;;
  venv) venv ;;
  *) echo "usage: $0 system|venv" >&2; exit 2 ;;
esac
