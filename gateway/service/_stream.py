"""Sax stream items normalised into per-sample text deltas.

A Sax ``GenerateStreamItem`` says "keep the first ``prefix_len`` characters of this sample's
text and append ``text``", and carries the step's score, which Sax clients add up (upstream's
decoder sends per-step scores; saxutil sums them). Clients of the gateway get the simpler shape
most LLM APIs use: text to append, the sample's score so far, plus a ``backtrack`` count in
the rare case the model revised what it had already streamed.
"""

from __future__ import annotations

from collections.abc import Sequence

from saxgateway.v1 import gateway_pb2 as pb

from gateway.client import StreamItem


class DeltaTracker:
    """Remembers every sample's text and score so far and turns Sax items into deltas."""

    __slots__ = ("_scores", "_texts")

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._scores: list[float] = []

    def feed(self, items: Sequence[StreamItem]) -> list[pb.TextDelta]:
        """Applies one Sax stream message; returns the deltas it amounts to."""
        deltas = []
        for index, item in enumerate(items):
            if index == len(self._texts):
                self._texts.append("")
                self._scores.append(0.0)
            before = self._texts[index]
            keep = max(0, min(item.prefix_len, len(before)))  # a negative one keeps none
            backtrack = len(before) - keep
            self._texts[index] = (before if backtrack == 0 else before[:keep]) + item.text
            if item.scores:
                self._scores[index] += item.scores[0]
            if item.text or backtrack:
                deltas.append(
                    pb.TextDelta(
                        index=index, backtrack=backtrack, text=item.text, score=self._scores[index]
                    )
                )
        return deltas

    def final(self) -> list[pb.DecodedText]:
        """The complete samples, in sample order."""
        return [
            pb.DecodedText(text=text, score=score)
            for text, score in zip(self._texts, self._scores, strict=True)
        ]
