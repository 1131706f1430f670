# syntax=docker/dockerfile:1
# Three images from one file (docker-compose.yml picks them by target):
#   docker build --target worker  -t streamrec-worker .   # the core: producer, worker, CLI,
#                                                        # ALS, KernelMF, ScaNN, the `http`
#                                                        # extra; no TensorFlow
#   docker build --target trainer -t streamrec-trainer .  # the same plus the `tf` extra
#   docker build --target dashboard -t streamrec-dashboard .  # rq-dashboard (compose)
# A plain `docker build .` builds the last stage, the slim worker.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS base
# implicit's wheel links the system's OpenMP runtime (libgomp.so.1) instead of bundling it,
# and the slim image does not ship it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --create-home --home-dir /home/streamrec streamrec \
    && mkdir -p /data/streamrec && chown streamrec:streamrec /data/streamrec
ENV PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    STREAMREC_HOME=/data/streamrec
WORKDIR /home/streamrec

# Only the wheel leaves this stage: no sources, build tools or caches in the images.
FROM base AS wheel
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM base AS trainer
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/pip \
    pip install "$(echo /wheels/streamrec-*.whl)[tf]"
ENV TF_USE_LEGACY_KERAS=1
USER streamrec
ENTRYPOINT ["streamrec"]
CMD ["worker", "--queue", "training"]

# rq-dashboard, for docker-compose.yml (run with --json: RQ's JSON serializer, as streamrec's
# queues use). 0.9.0 imports six without declaring it.
FROM base AS dashboard
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "rq-dashboard==0.9.0" "rq>=3.0,<4" six
USER streamrec
EXPOSE 9181
ENTRYPOINT ["rq-dashboard"]
CMD ["--json", "--bind", "0.0.0.0", "--port", "9181"]

FROM base AS worker
# The `http` extra (Starlette, uvicorn) for `streamrec http`: small, and no TensorFlow.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/pip \
    pip install "$(echo /wheels/streamrec-*.whl)[http]"
USER streamrec
ENTRYPOINT ["streamrec"]
CMD ["worker", "--queue", "events"]
