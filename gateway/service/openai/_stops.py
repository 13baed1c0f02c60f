"""Stop strings, applied by the gateway (Sax has no stop sequences).

A finished text is cut before its first stop string. A stream is cut the same way, so text
is held back while it could still be the start of a stop string: a client never receives
text that a later step turns out to end in a stop string.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def cut(text: str, stops: Sequence[str], kept: Collection[str] = ()) -> tuple[str, bool]:
    """``text`` up to its first stop string (through it if it is one of ``kept``: vLLM's
    ``include_stop_str_in_output``), and whether one was found."""
    found = [(i, stop) for stop in stops if (i := text.find(stop)) >= 0]
    if not found:
        return text, False
    first, stop = min(found, key=lambda at: at[0])
    return text[: first + len(stop) if stop in kept else first], True


class StopScanner:
    """Cuts one streamed sample at its first stop string."""

    __slots__ = ("_kept", "_pending", "_stops", "stopped")

    def __init__(self, stops: Sequence[str], kept: Collection[str] = ()) -> None:
        self._stops = tuple(stops)
        self._kept = kept
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Takes the sample's next text; returns what may be sent now."""
        if self.stopped:
            return ""
        buffer = self._pending + text
        kept, self.stopped = cut(buffer, self._stops, self._kept)
        if self.stopped:
            self._pending = ""
            return kept
        hold = self._held(buffer)
        self._pending = buffer[len(buffer) - hold :]
        return buffer[: len(buffer) - hold]

    def flush(self) -> str:
        """The held-back text, once the sample has ended."""
        pending, self._pending = self._pending, ""
        return "" if self.stopped else pending

    def _held(self, buffer: str) -> int:
        # The longest end of the buffer that begins some stop string.
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
