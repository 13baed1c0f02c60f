# The sax-gateway image: the gateway, the embedded cell, and `saxgw envoy-config`, which
# renders envoy/envoy.yaml.tmpl for the official Envoy image (see docker-compose.yml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY gen gen
COPY envoy envoy
COPY openapi openapi
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home saxgw
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER saxgw
WORKDIR /home/saxgw
EXPOSE 50051
ENTRYPOINT ["saxgw"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "50051", "--sax-root", "/data/sax-root"]
