"""The last check of a direct call, on the message a model server would get: one model and one
query, nothing else. Envoy's body reader and the transcoder can read one body two ways: a key
named twice is the last value to the reader, while the transcoder writes each it meets, so
``"timeout": "0s", "timeout": null`` read as "no timeout" sent the model server one (a call the
gateway refuses), and ``"extra_inputs": {...}, "extra_inputs": null`` our map of Values where
Sax reads its own ExtraInputs. A message with any other field, or either field twice, goes to a
gateway, which reads it as protobuf does."""

from __future__ import annotations

from gateway.edge import header_predicate, skip_when
from gateway.launch.direct._files import Config

#: The Lua filter's name, and the namespace of its direct routes' metadata.
WIRE_FILTER = "direct_wire"
#: The metadata key it sets (in the body's namespace) on a message that is not to go direct.
REFUSED = "refused"

_EXT = "type.googleapis.com/envoy.extensions."

# Walks the message's top-level fields (after gRPC's 5-byte frame prefix): each is a varint tag
# (field number * 8 + wire type) and, for wire type 2, a varint length and that many bytes.
_CHECK = """
local function varint(bytes, i)
  local value, scale = 0, 1
  while true do
    local b = bytes:byte(i)
    if b == nil then return nil, i end
    value = value + (b %% 128) * scale
    i = i + 1
    if b < 128 then return value, i end
    scale = scale * 128
  end
end

local function only_model_and_query(bytes)
  local seen, i = {}, 6
  while i <= #bytes do
    local tag
    tag, i = varint(bytes, i)
    if tag == nil or tag %% 8 ~= 2 then return false end
    local field = (tag - 2) / 8
    if (field ~= 1 and field ~= 2) or seen[field] then return false end
    seen[field] = true
    local length
    length, i = varint(bytes, i)
    if length == nil then return false end
    i = i + length
  end
  return i == #bytes + 1
end

function envoy_on_request(request)
  if request:metadata():get("direct") == nil then return end
  local body = request:body()
  if body ~= nil and only_model_and_query(body:getBytes(0, body:length())) then return end
  request:streamInfo():dynamicMetadata():set("%(namespace)s", "%(refused)s", "1")
  request:clearRouteCache()
end
"""


def _code(namespace: str) -> Config:
    return {"inline_string": _CHECK % {"namespace": namespace, "refused": REFUSED}}


def wire_filter(namespace: str, http_path: str) -> Config:
    """The check, after the transcoder, whose message it reads. Envoy builds a call's filters
    from the route of its HTTP path (the catch-all, for ``/generate``), so a direct route cannot
    turn it on: it is skipped for every call not made of ``http_path``, and returns at
    once on a route without `route_metadata` (a call going to a gateway anyway)."""
    lua = {
        "name": WIRE_FILTER,
        "typed_config": {
            "@type": _EXT + "filters.http.lua.v3.Lua",
            "stat_prefix": WIRE_FILTER,
            "default_source_code": _code(namespace),
        },
    }
    not_generate = {"not_matcher": header_predicate("x-envoy-original-path", {"exact": http_path})}
    return skip_when(WIRE_FILTER, lua, not_generate)


def route_metadata() -> Config:
    """A direct route's metadata: the check reads the message, and `cost_header` gives a
    model server's overload refusal the Retry-After a gateway's 429 has (envoy.yaml.tmpl)."""
    return {"filter_metadata": {WIRE_FILTER: {"direct": True}, "cost_header": {"direct": True}}}
