"""The shared leaf: what every role needs to speak Sax, and nothing else.

- ``gateway.common.names``: cell and model IDs, model paths and checkpoints, Sax's rules.
- ``gateway.common.errors``: the status-error tree, and upstream's Go code names in messages
  (recovered by clients, written by the cell).
- ``gateway.common.storage``: SAX_ROOT access, a local directory or ``gs://``.
- ``gateway.common.rpc``: the typed servicer context every gRPC method takes.

May import: the standard library, grpc, protobuf and the generated ``saxml.protobuf`` code;
nothing else from ``gateway`` (``tests/unit/test_layers.py`` keeps it so).
"""
