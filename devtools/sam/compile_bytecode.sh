#!/usr/bin/env bash
# Compiles every module of a function's artifact (handlers/, lib/ and the installed requirements) to bytecode for the
# Lambda runtime's Python; run by devtools/sam/Makefile after pip:   devtools/sam/compile_bytecode.sh ARTIFACTS_DIR X.Y
#
# Lambda's code directory is read-only, so an artifact without bytecode compiles every module it imports from source
# at every cold start (bench/results.md: deployed INIT with and without). The bytecode is compiled by a pythonX.Y
# (bytecode is version-specific: another version's would be ignored at import, never used), in unchecked-hash mode
# (PEP 552: valid whatever timestamps the zip gives the sources) and with /var/task (Lambda's task root) as the
# source path it records, so the build does not depend on the folder it ran in.
#
# The interpreter: $LAMBDA_PYTHON when set, else pythonX.Y on PATH or installed with pyenv (devtools/bootstrap.sh).
# Without one the build fails and says how to get one; LAMBDA_BYTECODE=0 builds without bytecode, with a warning.
set -euo pipefail
artifact=${1:?usage: $0 ARTIFACTS_DIR X.Y}
version=${2:?usage: $0 ARTIFACTS_DIR X.Y}
here=$(cd "$(dirname "$0")" && pwd)

# Whatever bytecode came with the sources or the wheels goes: the artifact holds the target version's or none.
find "$artifact" -name __pycache__ -type d -prune -exec rm -rf {} +

if [ "${LAMBDA_BYTECODE:-1}" = 0 ]; then
  echo "WARNING: LAMBDA_BYTECODE=0: no bytecode in $artifact; every cold start will compile the modules it imports" >&2
  exit 0
fi

python=${LAMBDA_PYTHON:-}
if [ -z "$python" ]; then
  python=$("$here/../bootstrap.sh" python "$version") || python=
fi
if [ -z "$python" ]; then
  cat >&2 <<MESSAGE
ERROR: no python$version on this machine to compile the artifact's bytecode for the python$version runtime.
  Install one (pyenv install $version, uv python install $version, or your OS's python$version package),
  or name it: LAMBDA_PYTHON=/path/to/python$version, or build in Lambda's build image: sam build --use-container.
  LAMBDA_BYTECODE=0 builds without bytecode (every cold start then compiles the modules it imports).
MESSAGE
  exit 1
fi

# Bytecode is valid only for the version that wrote it: refuse anything but a final release of exactly that one.
wanted_tag=cpython-${version//./}
read -r found_version level tag < <("$python" -c \
  'import sys; print("%d.%d.%d" % sys.version_info[:3], sys.version_info.releaselevel, sys.implementation.cache_tag)')
if [ "$tag" != "$wanted_tag" ] || [ "$level" != final ]; then
  echo "ERROR: $python is Python $found_version ($level, $tag), not a final CPython $version release:" \
    "its bytecode would not be used by the python$version runtime; set LAMBDA_PYTHON to a python$version" >&2
  exit 1
fi

(cd "$artifact" && "$python" -m compileall -q -f -j 0 --invalidation-mode unchecked-hash -d /var/task .)
echo "bytecode: $tag (unchecked-hash) compiled by $python (Python $found_version)"
