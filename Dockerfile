# The base image by its digest (the tag beside it says which): a rebuild gets the same bytes. To take a newer one:
# `docker buildx imagetools inspect python:3.11-slim`, and put its digest here.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# Build: the service and its runtime dependencies, as the lock file pins them (with their hashes), into a virtualenv.
# The package is built with the build backend of requirements/build.lock (hashed too), not whatever setuptools
# build isolation would fetch.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv /opt/build
WORKDIR /src
COPY requirements/runtime.lock requirements/build.lock ./requirements/
RUN /opt/venv/bin/pip install --require-hashes -r requirements/runtime.lock \
    && /opt/build/bin/pip install --require-hashes -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY service ./service
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheel . \
    && /opt/venv/bin/pip install --no-deps /tmp/wheel/*.whl

# Run: the virtualenv and the migrations, as an unprivileged user.
FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 timex
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PORT'], timeout=2)"]
ENTRYPOINT ["timex-licensing"]
CMD ["serve"]
