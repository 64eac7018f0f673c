# syntax=docker/dockerfile:1
#
# rubricgate HTTP reward gateway: `rubricgate serve` with the embedded CPU judge baked in.
#
# The container binds 0.0.0.0, so it REFUSES TO START WITHOUT RUBRICGATE_API_KEY:
#   docker build -t rubricgate .
#   docker run -p 8000:8000 -e RUBRICGATE_API_KEY=change-me rubricgate
# Clients send `Authorization: Bearer <key>`. Any `rubricgate serve` flag can follow the image
# name (e.g. `--judge litellm:hosted_vllm/Qwen/Qwen3-8B --rubric helpfulness`), or set the
# RUBRICGATE_* variables. The judge cache lives in the /data volume.
#
# The install steps are docker/install.sh, the same script tests/test_docker_steps.py runs in a
# fresh venv: change them there, not here.
#
# CMAKE_ARGS: the default builds llama.cpp for any x86-64 CPU with AVX2 (GGML_NATIVE=OFF), so the
# image runs on hosts other than the build host; for the build host's exact CPU pass
# --build-arg CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON".

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: compilers, the venv and the baked model -------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

ARG CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    RUBRICGATE_MODEL_DIR=/opt/models

COPY . /src
RUN sh /src/docker/install.sh /opt/venv /src

# ---- runtime: no compilers, non-root ------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# llama.cpp's shared libraries link libgomp (OpenMP) and libstdc++.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rubricgate \
    && useradd --system --uid 10001 --gid rubricgate --create-home --home-dir /home/rubricgate \
       --shell /usr/sbin/nologin rubricgate \
    && mkdir -p /data \
    && chown 10001:10001 /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/models /opt/models

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    RUBRICGATE_MODEL_DIR=/opt/models \
    RUBRICGATE_HOST=0.0.0.0 \
    RUBRICGATE_PORT=8000 \
    RUBRICGATE_CACHE=sqlite:////data/cache.db

USER 10001:10001
WORKDIR /home/rubricgate

# As the runtime user: the copied venv loads with only the runtime libraries above, and the baked
# model (root-owned, read-only here) still counts as verified, so no start re-assembles it.
RUN rubricgate --help >/dev/null \
    && python -c "import llama_cpp, os; from pathlib import Path; from rubricgate.judges.embedded_model import ensure_embedded_model; ensure_embedded_model(Path(os.environ['RUBRICGATE_MODEL_DIR']))"

VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; key = os.environ.get('RUBRICGATE_API_KEY'); req = urllib.request.Request('http://127.0.0.1:' + os.environ.get('RUBRICGATE_PORT', '8000') + '/healthz', headers={'Authorization': 'Bearer ' + key} if key else {}); urllib.request.urlopen(req, timeout=4)"]

ENTRYPOINT ["rubricgate", "serve"]
