"""Which version of a published model an Update was computed from, so that the embedded
admin can refuse one computed from a stale read.

Sax's Update replaces a model's whole definition and Sax keeps no version number, so two
read-modify-write changes of one model (an update and an ACL change, through two gateway
processes) could each write back what the other had just changed. The client sends the
revision of the definition it read in request metadata; the embedded admin compares it with
the definition it holds and answers ABORTED when they differ, and the client reads again. An
upstream admin ignores the metadata (and keeps upstream's last-writer-wins)::

    metadata = ((EXPECT_KEY, revision(listed.model)),)
"""

from __future__ import annotations

import hashlib

from saxml.protobuf import admin_pb2

#: Request metadata of an Update: the revision of the definition the change was made from.
EXPECT_KEY = "x-saxgw-expect-revision"


def revision(model: admin_pb2.Model) -> str:
    """A digest of what an Update may change (not the server-learnt method names, nor the
    deployment's uuid, which List hides)."""
    definition = admin_pb2.Model()
    definition.CopyFrom(model)
    definition.ClearField("method_names")
    definition.ClearField("uuid")
    return hashlib.sha256(definition.SerializeToString(deterministic=True)).hexdigest()[:32]
