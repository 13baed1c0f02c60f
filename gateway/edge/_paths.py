"""Which gRPC methods are open, admin-only or data calls: the one table Envoy's rules use.

Envoy checks roles after the transcoder, so one rule covers HTTP/JSON, native gRPC and
grpc-web alike: every request has its gRPC path by then. Credentials are checked before any
filter reads a body (gateway/edge/_envoy.py), where an HTTP/JSON request still has its own
path: the open methods' HTTP paths (`OPEN_HTTP`) are open there too.
"""

from __future__ import annotations

SERVICE = "/saxgateway.v1.SaxGateway/"

#: Anyone may call these, with or without a credential (plus Envoy's own /healthz).
OPEN = (
    SERVICE + "GetInfo",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/List",
    "/grpc.health.v1.Health/Watch",
    "/openapi.json",
)

#: The HTTP paths of the open methods (GetInfo's binding in proto/saxgateway/v1/gateway.proto),
#: as credentials are checked before the transcoder gives a request its gRPC path; and for
#: roles, where a request no method serves keeps it (the virtual host refusing other Hosts).
#: Then the /docs page (Swagger UI) and its files, each by name, as the template's routes
#: serve them: open by prefix, any path under /docs (`/docs/x`, `/docs/x%2F..`) went on to a
#: gateway without a credential.
OPEN_HTTP = (
    "/",
    "/docs",
    "/docs/",
    "/docs/docs.js",
    "/docs/swagger-ui-bundle.js",
    "/docs/swagger-ui.css",
)

#: Calls that change the cell: the `admin` role.
ADMIN = tuple(SERVICE + m for m in ("PublishModel", "UpdateModel", "UnpublishModel", "SetAcl"))

#: Reads an operator may reserve for the `admin` role (`admin_only` in the config).
EXPOSABLE_PATHS: dict[str, tuple[str, ...]] = {
    # Every call whose reply lists model-server addresses.
    "addresses": tuple(SERVICE + m for m in ("ListModels", "GetModel", "WatchAddresses")),
    "stats": (SERVICE + "GetStats",),
}
#: Reflection is matched by prefix: v1alpha and v1 both exist.
REFLECTION_PREFIX = "/grpc.reflection."
