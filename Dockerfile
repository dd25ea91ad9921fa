# Leitstand's operator image: `docker build -t leitstand .`
# Multi-stage: the build stage installs the package from this repository into a venv;
# the runtime stage copies only the venv and runs as a non-root user.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY crds/ crds/
COPY deploy/profiles/ deploy/profiles/
COPY deploy/kwok/ deploy/kwok/
RUN python -m venv /opt/leitstand && /opt/leitstand/bin/pip install .

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="leitstand" \
      org.opencontainers.image.description="Fair-share, gang and topology-aware GPU scheduling for Kubernetes"
COPY --from=build /opt/leitstand /opt/leitstand
ENV PATH=/opt/leitstand/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["leitstand"]
CMD ["run"]
