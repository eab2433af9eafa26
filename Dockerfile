# syntax=docker/dockerfile:1
# The Tenure operator: `docker build -t tenure:0.1.0 .`, then deploy/ runs it (`tenure run`).
#
# Two stages: the first installs Tenure and its dependencies into a virtual environment, the
# second copies that environment onto a clean base and nothing else, so the running image holds no
# compiler, no pip and no source tree. The base is pinned to an exact release; pin it by digest in
# your build pipeline too (`docker buildx imagetools inspect python:3.11.13-slim-bookworm`).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/tenure
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Installed as a package (not editable), then the installers leave the environment.
RUN /opt/tenure/bin/pip install . \
    && /opt/tenure/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tenure" \
      org.opencontainers.image.description="Kubernetes operator that governs non-human identities from approved ITSM tickets" \
      org.opencontainers.image.licenses="Apache-2.0"
# No installer in the running image either. The user has a passwd entry because kopf names the
# operator after the user (getpass); its uid is the one deploy/ runs as (runAsUser 65532).
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --gid 65532 tenure \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin tenure
COPY --from=build /opt/tenure /opt/tenure
ENV PATH=/opt/tenure/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# health (/healthz, /readyz), webhook (HTTPS), metrics (/metrics)
EXPOSE 8080 8443 9090
ENTRYPOINT ["tenure"]
CMD ["run"]
