"""One long-lived grpc.aio channel (and its stubs) per model-server address."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterable

import grpc
from saxml.protobuf import (
    audio_pb2_grpc,
    custom_pb2_grpc,
    lm_pb2_grpc,
    multimodal_pb2_grpc,
    vision_pb2_grpc,
)

from gateway.client._serializing import serializing
from gateway.common.deadline import now

_log = logging.getLogger(__name__)
# The hang watch's logger (`_hung`, which imports this module): the end of its WARNING of a
# replica that answers nothing, when the replica leaves, is logged here.
_hung_log = logging.getLogger("gateway.client._hung")

#: The most headers and trailers a reply may carry. grpc's defaults (8 KiB, and 16 KiB at
#: most) are below a model server's long status message (a Python traceback, an XLA dump of
#: its memory), which grpc then failed RESOURCE_EXHAUSTED: the failure lost, and the model
#: taken for overloaded. The gateway cuts the message short where it answers (service/
#: _errors.py's `clip`).
MAX_METADATA_BYTES = 1 << 20

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    # Images, audio and embeddings can be large; Sax servers set no limit either.
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    # A restarted server should be reachable again within a second or two, not after gRPC's
    # default reconnect backoff (which grows to two minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Despite its name, grpc takes this as the time a connection attempt gets (TCP connect,
    # then the server's HTTP/2 SETTINGS; grpc's default is 20 s), not as a backoff. At 100 ms
    # a server more than about 50 ms away (another region) was out of reach: each attempt
    # timed out before its SETTINGS came, calls failed UNAVAILABLE "connection attempt timed
    # out before receiving SETTINGS frame", and the admin (whose channel is made anew after a
    # failure) could never be reached. 2 s reaches one up to about 800 ms away and still
    # gives up soon on one that accepts and says nothing.
    ("grpc.min_reconnect_backoff_ms", 2000),
    # Each channel is one connection to one server: no cross-channel subchannel sharing that
    # would tie the lifetime of one model's connection to another's.
    ("grpc.use_local_subchannel_pool", 1),
    # The router retries and fails over itself (client/_router.py), so grpc's own retry layer
    # would only add a second, blind retry loop. Off, every call also skips that layer's
    # per-call state: 5.5 KB less memory per open stream (11% of a minimal proxy's share).
    ("grpc.enable_retries", 0),
    # How far a stream's replies may run ahead of the caller reading them: a client that
    # stops reading a stream (a slow reader) holds the model server back once this much is
    # buffered here. grpc otherwise grows the window with its bandwidth probes, and a stalled
    # stream pulled a model's whole output (33 MB, 8,192 tokens of 4 KB) into the gateway.
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 1 << 20),
)

# A connection that went silent (a network path that drops packets: a cloud load balancer or
# NAT that forgot it, a cable pulled, a host gone without a FIN) is noticed by grpc only when
# a ping goes unanswered: without pings, calls on it waited for their whole deadline (60 s by
# default) while a replica elsewhere served, and each new call sent there waited too. With a
# call in flight, grpc pings after KEEPALIVE_S without a frame from the server and drops the
# connection once one goes unanswered for KEEPALIVE_TIMEOUT_S; the calls on it end
# UNAVAILABLE and the router retries them elsewhere. A server's ping policy (grpc's default:
# no more than one a 5 minutes without its sending data, 2 strikes tolerated) is kept by
# grpc's own cap of 2 pings until the client sends again, and 15 s apart, a server must stay
# silent for a minute while new calls come before it could object.
KEEPALIVE_S = 15.0
KEEPALIVE_TIMEOUT_S = 5.0


def _liveness_options() -> tuple[tuple[str, int], ...]:
    timeout_ms = int(KEEPALIVE_TIMEOUT_S * 1000)
    return (
        ("grpc.keepalive_time_ms", int(KEEPALIVE_S * 1000)),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        ("grpc.http2.ping_timeout_ms", timeout_ms),
    )


# Calls still running on a channel whose server left the model's address set get this long
# to finish before the channel is closed under them.
_CLOSE_GRACE_S = 30.0


def insecure_channel(address: str) -> grpc.aio.Channel:
    """A channel to ``address`` with the client's options."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


# A grpc call holds its connection open until the call object is freed, even once its channel
# is closed. Calls that ended in an error are often held by reference cycles (the error's
# traceback runs through frames that hold the call), which only the collector frees, and an
# idle process may not run a full collection for hours: after a hung admin resumed, every
# connection dropped during its outage stayed open. So a closed channel is followed, a few
# seconds later (its calls have ended by then), by a full collection. Never on a call's path:
# channels close when an admin is unreachable or moved, and when a replica leaves.
_COLLECT_AFTER_S = 5.0
_last_collection = float("-inf")


async def close_channel(channel: grpc.aio.Channel, grace: float | None = None) -> None:
    """Closes ``channel`` (cancelling its calls after ``grace`` seconds) and frees, soon after,
    what its calls left behind."""
    try:
        await channel.close(grace)
    finally:
        asyncio.get_running_loop().call_later(_COLLECT_AFTER_S, _collect)


def _collect() -> None:
    global _last_collection
    # One collection serves every channel closed before it: a timer set for a channel closed
    # before the last collection (which ran less than the delay ago) has nothing more to free.
    if time.monotonic() - _last_collection < _COLLECT_AFTER_S:
        return
    _last_collection = time.monotonic()
    gc.collect()


class Backend:
    """A model server: its channel, the stubs of every Sax data service (made once), the
    calls of this process now running on it (the router's measure of its load), and whether
    it answers at all (`_hung.py`)."""

    __slots__ = (
        "address",
        "am",
        "answers",
        "channel",
        "cm",
        "hinted",
        "in_flight",
        "lm",
        "mm",
        "probing",
        "suspect_since",
        "vm",
    )

    def __init__(self, address: str, max_reply_bytes: int | None = None) -> None:
        self.address = address
        self.in_flight = 0
        self.answers = 0
        """Calls it answered (a unary call's reply, a stream's first one): a count that stands
        still while it holds calls means it may hang."""
        self.suspect_since: float | None = None
        """When (``now()``) it last held a call and failed to answer a probe; None if it
        answers."""
        self.hinted = False
        """Suspect because another process of the stack found it silent, not yet by a probe
        of this one (`gateway/client/_hung.py`)."""
        self.probing = False
        options = CHANNEL_OPTIONS + _liveness_options()
        if max_reply_bytes is not None:
            limit = ("grpc.max_receive_message_length", max_reply_bytes)
            options = (*(o for o in options if o[0] != limit[0]), limit)
        self.channel = grpc.aio.insecure_channel(address, options=options)
        stubs = serializing(self.channel)  # a request grpc cannot serialize fails here
        self.lm = lm_pb2_grpc.LMServiceStub(stubs)
        self.vm = vision_pb2_grpc.VisionServiceStub(stubs)
        self.am = audio_pb2_grpc.AudioServiceStub(stubs)
        self.cm = custom_pb2_grpc.CustomServiceStub(stubs)
        self.mm = multimodal_pb2_grpc.MultimodalServiceStub(stubs)


class ChannelPool:
    """Backends keyed by address; created on first use and reused by every call."""

    def __init__(self, max_reply_bytes: int | None = None) -> None:
        self._max_reply_bytes = max_reply_bytes
        self._backends: dict[str, Backend] = {}
        # Channels closing after a grace period, by the task closing them.
        self._closing: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def get(self, address: str) -> Backend:
        backend = self._backends.get(address)
        if backend is None:
            backend = self._backends[address] = Backend(address, self._max_reply_bytes)
        return backend

    def __len__(self) -> int:
        return len(self._backends)

    def backends(self) -> list[Backend]:
        return list(self._backends.values())

    def suspect(self, address: str) -> bool:
        """Whether ``address`` is suspect of hanging (it held calls and answered no probe)."""
        backend = self._backends.get(address)
        return backend is not None and backend.suspect_since is not None

    def worse(self, address: str, other: str) -> bool:
        """Whether ``other`` is the better replica for a new call: ``address`` is suspect of
        hanging and ``other`` is not, or, both alike, ``address`` runs more of this process's
        calls."""
        backends = self._backends
        this, that = backends.get(address), backends.get(other)
        if this is None:
            return False
        if that is None:
            return this.in_flight > 0 or this.suspect_since is not None
        if (this.suspect_since is None) is not (that.suspect_since is None):
            return this.suspect_since is not None
        return this.in_flight > that.in_flight

    def retain(self, live: Iterable[str]) -> None:
        """Closes (after a grace period) the channels of addresses not in ``live``."""
        keep = set(live)
        for address in [a for a in self._backends if a not in keep]:
            backend = self._backends.pop(address)
            if backend.suspect_since is not None and not backend.hinted:  # its WARNING's end
                _hung_log.info(
                    "model server %s left the address sets of its models after %.0f s without "
                    "an answer: no call goes to it",
                    address,
                    now() - backend.suspect_since,
                )
            task = asyncio.get_running_loop().create_task(
                close_channel(backend.channel, _CLOSE_GRACE_S)
            )
            self._closing[task] = backend.channel
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._closing.pop(task, None)

    async def close(self) -> None:
        """Closes every channel now, cancelling the calls still running on them."""
        channels = [b.channel for b in self._backends.values()]
        self._backends = {}
        for task, channel in list(self._closing.items()):
            # A cancelled grace wait leaves its channel closing, which a second close leaves
            # as it is, calls and all: `Router.close` cancels those calls itself.
            task.cancel()
            channels.append(channel)
        await asyncio.gather(*(close_channel(c) for c in channels), return_exceptions=True)
