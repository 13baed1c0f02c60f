# The sax-gateway image: the gateway, the embedded cell, and `saxgw envoy-config`, which renders
# Envoy's config (and its drain-on-SIGTERM wrapper) for the Envoy container beside it.
#
# BASE is any image with Python 3.11+ and its venv module: the official python image by default;
# on a machine with no image registry, scripts/build-images makes one from Debian packages
# (debootstrap) and passes it here.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# PIP_OFFLINE=--no-index installs only from deploy/wheels/ (filled by scripts/build-images on the
# host); by default pip also reads the index, and deploy/wheels/ may be empty.
ARG PIP_OFFLINE=
RUN python3 -m venv /opt/saxgw
WORKDIR /src
COPY deploy/wheels /wheels
# Dependencies first, from the two pyproject.toml alone: their layer stays cached while the code
# changes. sax-gateway-client (saxgateway.v1, the stubs the gateway serves) is no index's: it is
# built from clients/python below, with the gateway.
COPY pyproject.toml README.md ./
COPY clients/python/pyproject.toml clients/python/
RUN python3 -c "import tomllib; print('\n'.join(r for f in ('pyproject.toml', 'clients/python/pyproject.toml') for r in tomllib.load(open(f, 'rb'))['project']['dependencies'] if not r.startswith('sax-gateway-client')))" > requirements.txt \
 && echo 'setuptools>=77' >> requirements.txt \
 && /opt/saxgw/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_OFFLINE --find-links /wheels -r requirements.txt
COPY gateway gateway
COPY gen gen
# gateway/launch links to the template and the OpenAPI document here.
COPY envoy envoy
COPY openapi openapi
# clients/python/saxgateway links to gen/saxgateway. pip check: the gateway's exact pin on the
# client holds (--no-deps checks nothing).
COPY clients/python clients/python
RUN /opt/saxgw/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation \
      ./clients/python . \
 && /opt/saxgw/bin/pip check --disable-pip-version-check \
 && /opt/saxgw/bin/pip uninstall --yes --disable-pip-version-check setuptools pip

FROM ${BASE}
# A fixed numeric UID, so Kubernetes' runAsNonRoot can verify it. /data (cell state) and
# /etc/envoy (rendered config) are owned by it and writable by group 0 too, so fresh volumes
# (copies of these folders) are writable by it and by the arbitrary UID in group 0 that
# OpenShift's restricted SCC runs containers as.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data saxgw \
 && mkdir -p /data /etc/envoy && chown saxgw:0 /data /etc/envoy && chmod 0775 /data /etc/envoy
COPY --from=build /opt/saxgw /opt/saxgw
ENV PATH=/opt/saxgw/bin:$PATH PYTHONUNBUFFERED=1
# grpc's tuning of the gateway processes, as `saxgw up` sets it (gateway/launch/tuning.py).
ENV GRPC_EXPERIMENTS=-event_engine_client,-event_engine_listener
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["saxgw"]
# Loopback: the gateway trusts the identity header Envoy sets (docs/security.md), so only an
# Envoy in its network namespace (a pod, `network_mode: service:...`) may reach it. Deployments
# that must reach it from another container say so in their own command (docker-compose.yml).
CMD ["gateway", "--host", "127.0.0.1", "--port", "50051", "--sax-root", "/data/sax-root"]
