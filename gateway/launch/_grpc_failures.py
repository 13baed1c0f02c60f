"""Failures grpc reports itself, before any of the gateway's code runs, given what the
gateway's own errors have: the ``grpc_failures`` filter of envoy/envoy.yaml.tmpl.

Every error the gateway sends names the request's ID in a ``google.rpc.RequestInfo``
(grpc-status-details-bin, which the transcoder prints as the JSON body's ``details``). grpc
fails some calls before the gateway's code runs, with no details: a ``grpc-timeout`` already
past when the call arrives (``Deadline Exceeded``), a header it cannot parse. Such a failure
is a reply with its status in its headers (trailers-only) and no details; this gives it the
RequestInfo, read from the reply's ``x-request-id`` (which the virtual host copies from the
request: a filter sees only the response's headers), cut to the prefix the logs keep, as the
gateway's own errors cut it.

Envoy's own replies to gRPC and grpc-web calls (no key, a rate limit, a body too large: the
mappers of `_replies`) are such failures too, and get the same RequestInfo, in a Status whose
message is their grpc-message. A grpc-web call's has no grpc-message yet here: Envoy does not
count it as gRPC, so its message is still the (text/plain) body, which the grpc_web filter
moves into grpc-message only after this has run on the way out; this reads it from the body.
Its Status had an empty message, which Connect-ES, reading the status from the details,
raised as `Unauthenticated ""`.

The header grpc cannot parse is a binary one (a name ending in ``-bin``) whose value is not
base64, which grpc answers INTERNAL (500: the server's fault, which the SDKs retry) "Error
parsing 'x-foo-bin' metadata: illegal base64 encoding". The mistake is the client's: a gRPC
library base64-encodes each binary header it sends, so only a client that writes its headers
itself (curl, grpc-web metadata) sends one that is not. It becomes INVALID_ARGUMENT (400),
naming the header and the fix, with the code changed for the access log too, which read the
reply's grpc-status before (`_access_log`). Refused here, after grpc, because Envoy cannot
find the header before: neither a route nor a matcher takes a pattern of header names (and
Envoy's CEL has no comprehensions over them), and a Lua reading every request's headers would
cost each open stream its coroutine. Dropping every ``-bin`` header instead would also drop
what gRPC clients send right.

A failure with status UNKNOWN whose message names a code as upstream Sax writes it (the Go
name last, "...: NotFound", or a Go status error's text, "code = NotFound desc = ...") gets
that code, as the gateway's client reads it (`code_from_text`, whose table this renders): a
direct call (gateway/launch/direct/) reaches an upstream model server with no gateway to read
it, and got a 500 for a refusal the model server meant as a 400 or a 404. The gateway's own
replies never are such failures (it sends UNKNOWN only for a text that names no code).

On every route, streams' included, where no other filter reads a reply (`cost_header` holds a
unary call's reply until its end): skipped at the headers of every other reply, so that a
stream or a success runs no Lua. What the filter costs an open SSE stream is 0.74 KB of
Envoy's memory (``python -m bench._stream_memory --streams 1500 base
no_grpc_failures_filter``: 80.58 and 79.84 KB allocated per stream).
"""

from __future__ import annotations

import grpc

from gateway.common.errors import go_code_names
from gateway.common.logs import LOGGED_ID_CHARS
from gateway.edge import header_predicate, skip_when
from gateway.launch._access_log import METADATA

_TYPES = "type.googleapis.com/envoy."

#: What grpc (1.85) says of a binary header whose value is not base64, as a Lua pattern that
#: captures the header's name (gRPC metadata names hold no quote).
GRPC_NOT_BASE64 = "^Error parsing '(.-%-bin)' metadata: illegal base64 encoding$"
#: The message of the INVALID_ARGUMENT it becomes; printable ASCII without %, so it goes in
#: grpc-message as it is (gRPC's percent-encoding leaves such text alone).
NOT_BASE64 = (
    "{header}: not base64, which a header whose name ends in -bin must be (gRPC binary"
    " metadata): encode its value, or name it without -bin"
)

_LUA = """\
local function varint(n)
  local bytes = ""
  while n >= 128 do
    bytes = bytes .. string.char(n %% 128 + 128)
    n = math.floor(n / 128)
  end
  return bytes .. string.char(n)
end
local function field(tag, bytes) return string.char(tag) .. varint(#bytes) .. bytes end
-- The first n characters of UTF-8 text s: the prefix of a request ID the logs keep.
local function prefix(s, n)
  local i = 1
  for _ = 1, n do
    if i > #s then break end
    local b = string.byte(s, i)
    i = i + ((b >= 240 and 4) or (b >= 224 and 3) or (b >= 192 and 2) or 1)
  end
  return string.sub(s, 1, i - 1)
end
local INFO = field(10, "type.googleapis.com/google.rpc.RequestInfo")
local GO_CODES = {%(go_codes)s}
-- The code an upstream Sax message names at its end ("...: NotFound"), or as a Go status
-- error's text ("code = NotFound desc = ..."), as the gateway's client reads it.
local function code_in_text(message)
  local name = string.match(message, "^(%%a+)%%s*$") or string.match(message, "[%%s:=](%%a+)%%s*$")
  if name and GO_CODES[name] then return GO_CODES[name] end
  name = string.match(message, "code = (%%a+) desc = ")
  return name and GO_CODES[name]
end
function envoy_on_response(response)
  local headers = response:headers()
  local status = tonumber(headers:get("grpc-status") or "")
  if status == nil then return end
  local encoded = headers:get("grpc-message")
  local message
  local text = string.find(headers:get("content-type") or "", "text/plain", 1, true) == 1
  if encoded == nil and text then
    -- Envoy's own reply to a grpc-web call: its message is still the body, which grpc_web
    -- makes the grpc-message after this has run.
    local body = response:body()
    message = body and body:getBytes(0, body:length()) or ""
    headers = response:headers()  -- body() waited: the old one is spent
  else
    message = string.gsub(encoded or "", "%%%%(%%x%%x)",
      function(hex) return string.char(tonumber(hex, 16)) end)
  end
  local header = status == %(internal)d and string.match(message, "%(grpc_not_base64)s")
  if header then
    status = %(invalid_argument)d
    message = header .. "%(not_base64)s"
    headers:replace("grpc-status", tostring(status))
    headers:replace("grpc-message", message)
    response:streamInfo():dynamicMetadata():set("%(namespace)s", "%(key)s", status)
  elseif status == %(unknown)d then
    local code = code_in_text(message)
    if code and code ~= status then
      status = code
      headers:replace("grpc-status", tostring(status))
      response:streamInfo():dynamicMetadata():set("%(namespace)s", "%(key)s", status)
    end
  end
  -- A google.rpc.Status: the code, the message and a RequestInfo naming the request's ID.
  local id = headers:get("x-request-id")
  if id == nil then return end
  if #id > %(logged_id_chars)d then id = prefix(id, %(logged_id_chars)d) end
  local details = field(26, INFO .. field(18, field(10, id)))
  local bytes = "\\8" .. varint(status) .. field(18, message) .. details
  headers:add("grpc-status-details-bin", response:base64Escape(bytes))
end
"""


def grpc_failures_filter() -> dict[str, object]:
    """The HTTP filter, skipped for any reply but a failure in its headers without details."""
    namespace, key = METADATA
    source = _LUA % {
        "internal": grpc.StatusCode.INTERNAL.value[0],
        "unknown": grpc.StatusCode.UNKNOWN.value[0],
        "go_codes": ", ".join(
            f"{name} = {code.value[0]}" for name, code in go_code_names().items()
        ),
        "grpc_not_base64": GRPC_NOT_BASE64,
        "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "not_base64": NOT_BASE64.removeprefix("{header}"),
        "namespace": namespace,
        "key": key,
        "logged_id_chars": LOGGED_ID_CHARS,
    }
    lua = {
        "name": "grpc_failures",
        "typed_config": {
            "@type": _TYPES + "extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": source},
        },
    }
    failed = header_predicate("grpc-status", _regex("[1-9][0-9]*"), of="Response")
    detailed = header_predicate("grpc-status-details-bin", _regex(".*"), of="Response")
    other = {"or_matcher": {"predicate": [{"not_matcher": failed}, detailed]}}
    return skip_when("grpc_failures", lua, other)


def _regex(regex: str) -> dict[str, object]:
    """A string matcher: the whole value matches ``regex`` (RE2)."""
    return {"safe_regex": {"google_re2": {}, "regex": regex}}
