"""Sax stream items normalised into per-sample text deltas.

A Sax ``GenerateStreamItem`` says "keep the first ``prefix_len`` characters of this sample's
text and append ``text``", and carries the step's score, which Sax clients add up (upstream's
decoder sends per-step scores; saxutil sums them). Clients of the gateway get the simpler shape
most LLM APIs use: text to append, the sample's score so far, plus a ``backtrack`` count in
the rare case the model revised what it had already streamed.

Every text a stream builds as it goes (each sample's, for the final message and the usage
counts) is a `TextSoFar`: ``text = text + piece`` copied the whole text at every token.
"""

from __future__ import annotations

from collections.abc import Sequence

from saxgateway.v1 import gateway_pb2 as pb

from gateway.client import StreamItem

#: Pieces a `TextSoFar` holds before it joins them: a joined text costs a copy of itself, a
#: piece held apart ~50 bytes of its own (a 4-character token, 14 times its text).
_PIECES = 256


class TextSoFar:
    """A text that grows piece by piece, in time and memory linear in its length (a str that
    grew ``+ piece`` at every token was copied whole each time: 8,192 tokens of 4 KB took
    the gateway 64 s of CPU, and the first 2,000 only 2.4 s).

        text = TextSoFar(); text.add(" world"); text.keep(3); str(text), len(text)
    """

    __slots__ = ("_joined", "_pieces", "_size")

    def __init__(self) -> None:
        self._joined = ""  # the text up to the pieces
        self._pieces: list[str] = []  # since, until as many as `_PIECES` or `_joined`'s size
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __str__(self) -> str:
        if self._pieces:
            self._join()
        return self._joined

    def add(self, piece: str) -> None:
        """Appends ``piece``."""
        if not piece:
            return
        self._pieces.append(piece)
        self._size += len(piece)
        # Joined when the pieces are as long as the text before them (so each character is
        # copied a few times in all) or numerous (so they cost little memory).
        if len(self._pieces) >= _PIECES or self._size >= 2 * len(self._joined):
            self._join()

    def keep(self, size: int) -> None:
        """Cuts the text to its first ``size`` characters."""
        if size < self._size:
            self._joined = str(self)[:size]
            self._size = size

    def _join(self) -> None:
        self._joined = "".join((self._joined, *self._pieces))
        self._pieces.clear()


class DeltaTracker:
    """Remembers every sample's length and score so far (and with ``keep_text`` its text, for
    `final` and the call's token counts) and turns Sax items into deltas. The OpenAI face
    keeps no text here: it sends deltas alone and keeps each choice's text itself, as it
    cuts it at stop strings (kept twice, a stream's output took twice the memory: 9 MB in a
    gateway per stalled stream of 4 KB tokens)."""

    __slots__ = ("_scores", "_sizes", "_texts")

    def __init__(self, *, keep_text: bool = True) -> None:
        self._sizes: list[int] = []
        self._scores: list[float] = []
        self._texts: list[TextSoFar] | None = [] if keep_text else None

    def feed(self, items: Sequence[StreamItem]) -> list[pb.TextDelta]:
        """Applies one Sax stream message; returns the deltas it amounts to."""
        deltas = []
        for index, item in enumerate(items):
            if index == len(self._sizes):
                self._sizes.append(0)
                self._scores.append(0.0)
                if self._texts is not None:
                    self._texts.append(TextSoFar())
            keep = max(0, min(item.prefix_len, self._sizes[index]))  # a negative one keeps none
            backtrack = self._sizes[index] - keep
            self._sizes[index] = keep + len(item.text)
            if self._texts is not None:
                self._texts[index].keep(keep)
                self._texts[index].add(item.text)
            if item.scores:
                self._scores[index] += item.scores[0]
            if item.text or backtrack:
                deltas.append(
                    pb.TextDelta(
                        index=index, backtrack=backtrack, text=item.text, score=self._scores[index]
                    )
                )
        return deltas

    @property
    def texts(self) -> list[TextSoFar]:
        """Every sample's text so far, a list that grows as samples come (a tracker that
        keeps their text): what the call's telemetry reads when the call ends."""
        assert self._texts is not None, "texts of a DeltaTracker(keep_text=False)"
        return self._texts

    def final(self) -> list[pb.DecodedText]:
        """The complete samples, in sample order (a tracker that keeps their text)."""
        assert self._texts is not None, "final() of a DeltaTracker(keep_text=False)"
        return [
            pb.DecodedText(text=str(text), score=score)
            for text, score in zip(self._texts, self._scores, strict=True)
        ]
