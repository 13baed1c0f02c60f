"""The OpenAI-compatible face of the gateway (``/v1/models``, ``/v1/completions``,
``/v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings``): a thin mapping onto the Sax
client calls the SaxGateway service makes, with the same deadlines and error codes. See
docs/openai.md."""

from __future__ import annotations

from gateway.service.openai._errors import ENVELOPE_KEY, error_fields, reply_headers
from gateway.service.openai._errors import KINDS as ERROR_KINDS
from gateway.service.openai._errors import abort as report_error
from gateway.service.openai._servicer import OpenAIGatewayServicer

__all__ = [
    "ENVELOPE_KEY",
    "ERROR_KINDS",
    "OpenAIGatewayServicer",
    "error_fields",
    "reply_headers",
    "report_error",
]
