#!/bin/sh
# Install rubricgate with its embedded CPU judge into a fresh virtualenv, and bake the judge's
# weights so nothing is fetched at run time. The Dockerfile runs exactly this script (builder
# stage); tests/test_docker_steps.py runs it too, so the image and the test share one recipe.
#
#   docker/install.sh VENV_DIR [SOURCE_DIR]
#
#   VENV_DIR    virtualenv to create (or reuse), e.g. /opt/venv or ~/.local/rubricgate
#   SOURCE_DIR  the rubricgate checkout to install (default: the folder above this script)
#
# Environment:
#   RUBRICGATE_MODEL_DIR  where the embedded GGUF is assembled (default: the user cache dir
#                         that `rubricgate` itself uses, so a plain user install just works)
#   PYTHON                interpreter that creates the venv (default: python3, 3.11 or newer)
#   CMAKE_ARGS            llama.cpp build flags (default: -DLLAVA_BUILD=OFF, no multimodal part)
#
# Compiling llama-cpp-python needs a C/C++ compiler and CMake (Debian: build-essential cmake) and
# takes 4-6 minutes on 2 cores the first time; pip's wheel cache makes later runs take seconds.
# That cache ignores CMAKE_ARGS: after changing them, run with PIP_NO_CACHE_DIR=1 to rebuild.
set -eu

usage() {
    echo "usage: $0 VENV_DIR [SOURCE_DIR]" >&2
    exit 2
}

[ "$#" -ge 1 ] && [ "$#" -le 2 ] || usage
case "$1" in -h | --help) usage ;; esac

here=$(cd "$(dirname "$0")" && pwd)
venv=$1
src=$(cd "${2:-$here/..}" && pwd)
python=${PYTHON:-python3}
CMAKE_ARGS=${CMAKE_ARGS:--DLLAVA_BUILD=OFF}
export CMAKE_ARGS

if [ ! -f "$src/pyproject.toml" ]; then
    echo "error: $src has no pyproject.toml: pass the rubricgate checkout as SOURCE_DIR" >&2
    exit 2
fi

echo "== 1/4 virtualenv $venv"
"$python" -m venv "$venv"
venv=$(cd "$venv" && pwd)

echo "== 2/4 pip install ${src}[llamacpp,checks] (CMAKE_ARGS=$CMAKE_ARGS)"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input "${src}[llamacpp,checks]"

echo "== 3/4 bake the embedded judge model into ${RUBRICGATE_MODEL_DIR:-the user cache dir}"
"$venv/bin/python" - <<'PY'
import os
from pathlib import Path

from rubricgate.judges.embedded_model import ensure_embedded_model
from rubricgate.judges.registry import default_model_dir

env = os.environ.get("RUBRICGATE_MODEL_DIR")
model = ensure_embedded_model(Path(env).expanduser() if env else default_model_dir())
print(f"{model} ({model.stat().st_size} bytes, verified)")
PY

echo "== 4/4 smoke check"
(
    cd /  # outside the checkout: data must come from the installed wheel
    "$venv/bin/rubricgate" --help >/dev/null
    "$venv/bin/rubricgate" rubric list
    "$venv/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
)
echo "installed: $venv/bin/rubricgate"
