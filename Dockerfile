# receiptd container image.
#
#   docker build -t receiptd:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -v receiptd-state:/var/lib/receiptd \
#     --stop-timeout 20 -p 127.0.0.1:9400:9400 \
#     -e RECEIPTD_ALIYUN_QUEUE_PREFIX=Alicom-Queue-1092397003988387- \
#     -e RECEIPTD_ALIYUN_ACCESS_KEY_ID_FILE=/run/secrets/aliyun_access_key_id \
#     -e RECEIPTD_ALIYUN_ACCESS_KEY_SECRET_FILE=/run/secrets/aliyun_access_key_secret \
#     -v /path/to/secrets:/run/secrets:ro receiptd:0.1.0 run --migrate
#
# --stop-timeout 20: Docker's default of 10 s equals receiptd's drain bound
# (RECEIPTD_SHUTDOWN_TIMEOUT); the kill must come after it.

ARG PYTHON_IMAGE=python:3.11-slim

# --- deps: wheels of every dependency, from pyproject.toml alone -----------------------
# A layer of its own, so that a change to receiptd's code rebuilds only receiptd's wheel.
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The package index, for builds behind a mirror (unset: PyPI). Proxy variables
# (HTTPS_PROXY, ...) are Docker's predefined build arguments.
ARG PIP_INDEX_URL

WORKDIR /src
COPY pyproject.toml .
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['huawei']))" \
        > /src/requirements.txt \
    && pip wheel -r /src/requirements.txt --wheel-dir /wheels \
    && cp /src/requirements.txt /wheels/

# --- builder: receiptd's own wheel ---------------------------------------------------
FROM deps AS builder
# Only what the build needs (.dockerignore is an allow-list).
COPY . .
RUN pip wheel --no-deps . --wheel-dir /own

# --- runtime -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Install from the wheels only (no index, no compiler in this stage); the wheels are
# bind-mounted, so they do not end up in a layer. Dependencies first (cached while
# pyproject.toml is unchanged), then receiptd. The console script lands in
# /usr/local/bin/receiptd, the same path the systemd unit uses.
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r /wheels/requirements.txt
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/own,target=/own \
    pip install --no-index --find-links=/wheels --find-links=/own 'receiptd[huawei]' \
    && receiptd --help >/dev/null

# Numeric non-root user, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
# /var/lib/receiptd is the state directory: mount a volume (emptyDir) there when the root
# filesystem is read-only. The relative default database URL sqlite:///receiptd.db
# resolves inside it because it is the working directory.
RUN groupadd --system --gid 10001 receiptd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/receiptd \
       --no-create-home --shell /usr/sbin/nologin receiptd \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/receiptd
USER 10001:10001
WORKDIR /var/lib/receiptd

ENV RECEIPTD_HTTP_ADDR=0.0.0.0:9400 \
    RECEIPTD_LOG_FORMAT=json

EXPOSE 9400
# receiptd drains on SIGTERM (Docker's and Kubernetes' default stop signal).
STOPSIGNAL SIGTERM

# For plain Docker; Kubernetes ignores it and uses the Deployment's probes. python instead
# of curl, which the slim image does not have. Assumes the default port 9400.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=3)"]

LABEL org.opencontainers.image.title="receiptd" \
      org.opencontainers.image.description="SMS delivery-receipt daemon (Aliyun MNS SmsReport/SmsUp, Huawei KooMessage)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENTRYPOINT ["receiptd"]
CMD ["run"]
