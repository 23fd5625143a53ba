# syntax=docker/dockerfile:1
# panther-bigpanda-bridge: `docker build -t panther-bigpanda-bridge .`
#
# Runs as an unprivileged user with a read-only root filesystem: the only writes go to the state
# volume /var/lib/bridge (SQLite database, its WAL and its lock file). Mount the config at
# /etc/bridge/bridge.yaml and pass the secrets as environment variables (see README, Deploying).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the bridge and its dependencies into a virtualenv --------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/bridge
COPY pyproject.toml README.md ./
COPY bridge ./bridge
# pip byte-compiles what it installs, so the runtime never needs to write .pyc files.
RUN /opt/bridge/bin/pip install --no-cache-dir . \
    && /opt/bridge/bin/bridge --version

# --- runtime: the virtualenv, a non-root user, nothing else ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="panther-bigpanda-bridge" \
      org.opencontainers.image.description="Carries Panther alerts and their status changes into BigPanda" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/bridge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_CONFIG=/etc/bridge/bridge.yaml \
    BRIDGE_STATE__PATH=/var/lib/bridge/bridge.db

# A fixed numeric uid/gid so Kubernetes can check runAsNonRoot and set fsGroup to match.
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --home-dir /var/lib/bridge --no-create-home \
       --shell /usr/sbin/nologin bridge \
    && mkdir -p /var/lib/bridge /etc/bridge \
    && chown bridge:bridge /var/lib/bridge \
    && chmod 0750 /var/lib/bridge

COPY --from=build /opt/bridge /opt/bridge
# A starting point only: mount your own file over it (its tokens come from the environment).
COPY config/bridge.example.yaml /etc/bridge/bridge.yaml

USER 10001:10001
WORKDIR /var/lib/bridge
VOLUME ["/var/lib/bridge"]
EXPOSE 9108

# `bridge health` asks /readyz, so the image needs no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["bridge", "health", "--config", "/etc/bridge/bridge.yaml"]

# SIGTERM (docker stop, Kubernetes) lets in-flight batches finish within server.shutdown_grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bridge"]
CMD ["run", "--config", "/etc/bridge/bridge.yaml"]
