#!/usr/bin/env bash
# Installs what `make demo` / `make test` need on a fresh Debian/Ubuntu machine, and nothing that is already there.
#   devtools/bootstrap.sh system   PostgreSQL server binaries (with contrib's hstore/citext), PgBouncer, openssl, psql
#                               (apt-get, when missing)
#   devtools/bootstrap.sh venv     .venv with requirements-dev.txt (re-installed when the requirements change), plus
#                               other pg8000 releases under .venv/pg8000/<version> for the driver fallback tests
#   devtools/bootstrap.sh runtime-venv 3.13
#                               .venv-3.13 with requirements-dev.txt when a python3.13 is installed (PATH or pyenv):
#                               the local Lambda runtime runs functions on it, and `make test` runs the integration
#                               tier on it once more; without such an interpreter it says so and does nothing
#   devtools/bootstrap.sh python 3.13
#                               the path of a python3.13 that runs (PATH or pyenv), exit 1 when there is none; the
#                               SAM build compiles the artifact's bytecode with it (devtools/sam/compile_bytecode.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*" >&2; }

system() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || [ -n "${PG_BIN:-}" ] \
    || missing+=(postgresql)
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  # hstore and citext, which `make conformance` creates for SQLAlchemy's and pg8000's suites: Debian's and
  # Ubuntu's postgresql-NN ship them; where a server is installed without them, they are postgresql-contrib.
  if [ -z "${PG_BIN:-}" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    && ! ls /usr/share/postgresql/*/extension/hstore.control >/dev/null 2>&1; then
    missing+=(postgresql-contrib)
  fi
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
# range and one outside it (the stock dialect must take over). Keep in step with tests/kit/integration/test_driver_fallback.py.
OTHER_PG8000="1.31.4 1.30.5"

# A pythonX.Y that really runs: pyenv's shims exist for every installed version but refuse to run one that is not
# selected, so the interpreters under `pyenv root` are tried as well.
find_python_version() {
  local version=$1 candidate
  local candidates=("python$version")
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  if command -v pyenv >/dev/null 2>&1; then root=$(pyenv root); fi
  # Without pyenv on PATH (a bare CI environment) its interpreters are still where pyenv put them.
  for candidate in "$root"/versions/"$version".*/bin/python"$version"; do
    [ -x "$candidate" ] && candidates+=("$candidate")
  done
  for candidate in "${candidates[@]}"; do
    if "$candidate" -c 'import venv' >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  return 1
}

# make_venv DIR PYTHON [PG8000_RELEASES]: DIR holds requirements-dev.txt and those pg8000 releases under
# DIR/pg8000/<version> (pure Python: the driver fallback tests use .venv's from any interpreter); re-installed when
# the requirements change.
make_venv() {
  local dir=$1 python=$2 releases=${3:-}
  local stamp=$dir/.installed
  local wanted
  wanted=$( (cat requirements.txt requirements-dev.txt; echo "$releases") | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$dir/bin/python" ]; then return 0; fi
  if [ ! -x "$dir/bin/python" ]; then
    say "creating $dir with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$dir"
  fi
  say "installing requirements-dev.txt into $dir"
  # Some machines' pip config lists local mirrors that may be absent; pip warns per package, which is noise.
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  local release
  for release in $releases; do
    # These releases call scramp.make_channel_binding, which scramp 1.5 removed: install the scramp they were
    # released with beside them; python-dateutil (and asn1crypto) come from the venv.
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
      --target "$dir/pg8000/$release" "pg8000==$release" "scramp<1.5" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  done
  echo "$wanted" > "$stamp"
}

venv() {
  local python=.venv/bin/python
  [ -x "$python" ] || python=$(find_python)
  make_venv .venv "$python" "$OTHER_PG8000"
}

runtime_venv() {
  local version=${1:?usage: $0 runtime-venv X.Y}
  local python
  if ! python=$(find_python_version "$version"); then
    say "no python$version on this machine (PATH or pyenv): the local Lambda runtime falls back to .venv's Python" \
      "and \`make test\` skips its python$version pass"
    return 0
  fi
  make_venv ".venv-$version" "$python"
}

case "${1:-}" in
  system) system ;;
  venv) venv ;;
  runtime-venv) runtime_venv "${2:-}" ;;
  python) find_python_version "${2:?usage: $0 python X.Y}" ;;
  *) echo "usage: $0 system|venv|runtime-venv X.Y|python X.Y" >&2; exit 2 ;;
esac
