"""Stop strings, applied by the gateway (Sax has no stop sequences).

A finished text is cut before its first stop string: the one that begins first (of two that
begin at one place, the shorter, which ends first). A stream is cut the same way, so text is
held back while it could still be the start of a stop string, even once another stop string
has appeared after that start: a client never receives text that a later step turns out to
end in a stop string, and a stream's text is the text a call without ``stream`` gets.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def _first(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the first stop string in ``text`` begins, and which it is."""
    found = [(i, stop) for stop in stops if (i := text.find(stop)) >= 0]
    return min(found, key=lambda at: (at[0], len(at[1])), default=None)


def cut(text: str, stops: Sequence[str], kept: Collection[str] = ()) -> tuple[str, bool]:
    """``text`` up to its first stop string (through it if it is one of ``kept``: vLLM's
    ``include_stop_str_in_output``), and whether one was found."""
    found = _first(text, stops)
    if found is None:
        return text, False
    first, stop = found
    return text[: first + len(stop) if stop in kept else first], True


class StopScanner:
    """Cuts one streamed sample at its first stop string."""

    __slots__ = ("_kept", "_pending", "_stops", "stopped")

    def __init__(self, stops: Sequence[str], kept: Collection[str] = ()) -> None:
        self._stops = tuple(stops)
        self._kept = kept
        self._pending = ""  # a start of some stop string: shorter than the longest one
        self.stopped = False

    def feed(self, text: str, backtrack: int = 0) -> str:
        """Takes the sample's next text, after the model took back the last ``backtrack``
        characters of what it had streamed; returns what may be sent now. Those still held
        back are dropped: never sent, as the model's final text lacks them. Those sent stay
        sent (OpenAI's chunks only append)."""
        if self.stopped:
            return ""
        if backtrack:
            self._pending = self._pending[: max(len(self._pending) - backtrack, 0)]
        buffer = self._pending + text
        held = len(buffer) - self._held(buffer)  # where a stop string may yet begin
        found = _first(buffer, self._stops)
        # A stop string found after the start of one that may still come is not the first:
        # "the capital of" may follow "the capital" (stop strings "the capital of", "capital").
        if found is not None and found[0] <= held:
            return self._cut(buffer)
        self._pending = buffer[held:]
        return buffer[:held]

    def flush(self) -> str:
        """The held-back text, once the sample has ended, up to a stop string it holds."""
        return "" if self.stopped else self._cut(self._pending)

    def _cut(self, buffer: str) -> str:
        kept, self.stopped = cut(buffer, self._stops, self._kept)
        self._pending = ""
        return kept

    def _held(self, buffer: str) -> int:
        # The longest end of the buffer that begins some stop string.
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
