"""Server-Sent Events in the OpenAPI document, as OpenAPI 3.2 describes them: a
``text/event-stream`` media type whose ``itemSchema`` is one event, modelled as an object of
the event's fields (``data``, ``event``, ...), its ``data`` a string of JSON
(``contentMediaType``) whose schema is ``contentSchema``. Validators (schemathesis) check each
event against it; humans and generators find the message type in ``contentSchema``.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
MEDIA_TYPE = "text/event-stream"


def event_stream(
    data: Schema,
    description: str,
    *,
    events: list[str] | None = None,
    end: str | None = None,
    example: str | None = None,
) -> Schema:
    """The media type object of a stream whose events carry ``data`` (a schema, or a $ref) as
    JSON; ``events``: the `event:` names each event has, if it names one; ``end``: a last
    event's ``data`` that is not JSON (OpenAI's ``[DONE]``)."""
    json_data: Schema = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": data,
    }
    properties: Schema = {"data": json_data}
    required = ["data"]
    if end is not None:
        properties["data"] = {
            "anyOf": [
                json_data,
                {"type": "string", "const": end, "description": "The end of the stream."},
            ]
        }
    if events is not None:
        properties["event"] = {"enum": events}
        required.insert(0, "event")
    item: Schema = {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
    }
    media: Schema = {"itemSchema": item}
    if example is not None:
        media["example"] = example
    return media


def event_data(media: Schema) -> Schema:
    """The schema of the JSON each event of ``media`` (an `event_stream`) carries."""
    data: Schema = media["itemSchema"]["properties"]["data"]
    for choice in data.get("anyOf", [data]):
        if "contentSchema" in choice:
            schema: Schema = choice["contentSchema"]
            return schema
    raise ValueError("no JSON data in this event stream")
