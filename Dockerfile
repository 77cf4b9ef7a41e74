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

# --- deps: the locked dependencies, in the virtualenv the image runs from --------------
# A layer of its own, rebuilt only when requirements/ changes (`make lock`). pip runs in
# hash-checking mode: every file it downloads must match a hash in requirements/*.txt. The
# build backend (build.txt) goes into this stage's Python only: it builds the few
# dependencies published as source alone, and receiptd in the next stage.
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The package index, for builds behind a mirror (unset: PyPI). Proxy variables
# (HTTPS_PROXY, ...) are Docker's predefined build arguments.
ARG PIP_INDEX_URL

# strip (binutils), for this stage only, unless the base image has it.
RUN command -v strip >/dev/null || { apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends binutils; }

WORKDIR /src
COPY requirements/ requirements/
# The virtualenv gets no pip (--without-pip): this stage's pip installs into it (--python),
# uncompiled (the runtime stage compiles what receiptd imports). Then what nothing imports
# at run time goes: the test suites of dependencies and the debug symbols of the compiled
# extension modules (about 30 MB; --strip-unneeded keeps what the dynamic loader needs).
RUN pip install --require-hashes --no-deps -r requirements/build.txt \
    && pip wheel --require-hashes --no-deps --no-build-isolation --use-pep517 \
        --wheel-dir /wheels -r requirements/image.txt \
    && python3 -m venv --without-pip /opt/receiptd \
    && pip --python /opt/receiptd/bin/python install --no-index --no-deps --no-compile \
        /wheels/*.whl \
    && cd /opt/receiptd/lib/python3*/site-packages \
    && rm -r Crypto/SelfTest sqlalchemy/testing alembic/testing simplejson/tests websocket/tests \
    && find . -name '*.cpython-*.so' -o -name '*.abi3.so' | xargs -r strip --strip-unneeded

# --- builder: receiptd, laid out as it goes into the virtualenv -------------------------
FROM deps AS builder
# Only what the build needs (.dockerignore is an allow-list).
COPY . .
RUN pip wheel --no-deps --no-build-isolation . --wheel-dir /own \
    && pip --python /opt/receiptd/bin/python install --no-index --no-deps --no-compile \
        --root /staged /own/receiptd-*.whl

# --- runtime -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Two layers: the dependencies (cached while requirements/ is unchanged), then receiptd.
# Nothing is downloaded or installed in this stage (no pip run). The console script is linked to
# /usr/local/bin/receiptd, the same path the systemd unit uses.
COPY --from=deps /opt/receiptd /opt/receiptd
COPY --from=builder /staged/ /
# Bytecode for what receiptd imports (every module of receiptd and receiptd_emulator, with what they load at import,
# and the drivers and SDK modules loaded on first use), written once here because the root
# filesystem is read-only at run time: a start then skips compiling them (seconds). Modules
# never imported stay source only (about 20 MB less than compiling everything); one missed
# here is compiled in memory when imported, as without this step.
RUN ln -s /opt/receiptd/bin/receiptd /usr/local/bin/receiptd \
    && PYTHONDONTWRITEBYTECODE= /opt/receiptd/bin/python -c "\
import importlib, pkgutil, receiptd, receiptd_emulator; \
names = [m.name for p in (receiptd, receiptd_emulator) \
         for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') \
         if not m.name.endswith('__main__') and '.migrations.' not in m.name]; \
names += ['psycopg', 'pymysql', 'sqlalchemy.dialects.postgresql.psycopg', \
          'sqlalchemy.dialects.mysql.pymysql', 'alembic.command', 'alembic.config', \
          'alembic.script', 'alembic.runtime.migration', 'alibabacloud_dybaseapi20170525.client', \
          'huaweicloudsdkkoomessage.v1', 'huaweicloudsdkcore.auth.credentials', \
          'huaweicloudsdkcore.exceptions.exceptions', 'huaweicloudsdkcore.http.http_config']; \
[importlib.import_module(name) for name in names]" \
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
