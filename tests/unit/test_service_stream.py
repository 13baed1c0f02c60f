"""Sax `prefix_len` stream items -> per-sample deltas."""

from __future__ import annotations

import time
import tracemalloc

from gateway.client import StreamItem
from gateway.service._stream import DeltaTracker, TextSoFar


def _item(text: str, prefix_len: int, score: float = 0.0) -> StreamItem:
    return StreamItem(text=text, prefix_len=prefix_len, scores=[score])


def _deltas(tracker: DeltaTracker, *items: StreamItem) -> list[tuple[int, int, str, float]]:
    return [(d.index, d.backtrack, d.text, d.score) for d in tracker.feed(items)]


def test_feed_appends_and_sums_per_step_scores() -> None:
    tracker = DeltaTracker()
    assert _deltas(tracker, _item("Hello", 0, -1.0)) == [(0, 0, "Hello", -1.0)]
    assert _deltas(tracker, _item(" world", 5, -2.0)) == [(0, 0, " world", -3.0)]
    assert [(t.text, t.score) for t in tracker.final()] == [("Hello world", -3.0)]


def test_feed_backtracks_when_the_model_revises_its_text() -> None:
    tracker = DeltaTracker()
    _deltas(tracker, _item("Hello wor", 0))
    # Keep "Hello " (6 characters), replace "wor" with "there".
    assert _deltas(tracker, _item("there", 6, -3.0)) == [(0, 3, "there", -3.0)]
    assert tracker.final()[0].text == "Hello there"


def test_feed_tracks_every_sample_separately() -> None:
    tracker = DeltaTracker()
    assert _deltas(tracker, _item("a", 0, -1.0), _item("b", 0, -2.0)) == [
        (0, 0, "a", -1.0),
        (1, 0, "b", -2.0),
    ]
    # Sample 0 has nothing new: no delta for it.
    assert _deltas(tracker, _item("", 1, 0.0), _item("c", 1, -0.5)) == [(1, 0, "c", -2.5)]
    assert [(t.text, t.score) for t in tracker.final()] == [("a", -1.0), ("bc", -2.5)]


def test_feed_counts_prefix_len_in_characters_as_sax_servers_do() -> None:
    tracker = DeltaTracker()
    _deltas(tracker, _item("né", 0))
    assert _deltas(tracker, _item("!", 2)) == [(0, 0, "!", 0.0)]
    assert _deltas(tracker, _item("e", 1)) == [(0, 2, "e", 0.0)]  # drops "é!"
    assert tracker.final()[0].text == "ne"


def test_final_is_empty_before_any_item() -> None:
    assert DeltaTracker().final() == []


def test_feed_reads_a_negative_prefix_len_as_none_kept() -> None:
    # A model server's garbage: Python's slice counted it from the end, and the delta took
    # back more characters than the sample had (4 of "abc"), which no client can apply.
    tracker = DeltaTracker()
    _deltas(tracker, _item("abc", 0))
    assert _deltas(tracker, _item("xy", -1)) == [(0, 3, "xy", 0.0)]
    assert tracker.final()[0].text == "xy"


def test_a_long_stream_costs_time_in_proportion_to_its_text() -> None:
    # 2,000 tokens of 8 KB: 16 MB. Each sample's text was `before + text` at every token, a
    # copy of all of it so far: 16 GB copied here, seconds of the gateway's CPU that grew with
    # the square of the output (8,192 tokens of 4 KB through the stack: 66 s, the last 2,000
    # of them 31 s; the first 2,000, 2.4 s), while every other call on the gateway waited.
    token = "y" * 8000
    tracker = DeltaTracker()
    started = time.process_time()
    for step in range(2000):
        tracker.feed([_item(token, step * len(token)), _item(token, step * len(token))])
    texts = tracker.final()
    assert time.process_time() - started < 1.0  # about 0.01 s
    assert [len(t.text) for t in texts] == [16_000_000, 16_000_000]


def test_text_so_far_grows_and_is_cut() -> None:
    text = TextSoFar()
    assert (str(text), len(text)) == ("", 0)
    for piece in ("Hello", "", " wor", "ld"):
        text.add(piece)
    assert (str(text), len(text)) == ("Hello world", 11)
    text.keep(6)
    text.add("there")
    assert (str(text), len(text)) == ("Hello there", 11)
    text.keep(20)  # longer than the text: nothing to cut
    text.keep(0)
    assert (str(text), len(text)) == ("", 0)


def test_a_tracker_without_text_gives_the_same_deltas_and_holds_none() -> None:
    # The OpenAI face keeps each choice's text itself: a copy here doubled a stream's memory.
    items = [[_item("Hello wor", 0, -1.0), _item("a" * 100_000, 0)], [_item("there", 6, -2.0)]]
    kept, lean = DeltaTracker(), DeltaTracker(keep_text=False)
    tracemalloc.start()
    try:
        for step in items:
            assert _deltas(lean, *step) == _deltas(kept, *step)
        del kept
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 10_000  # the 100 KB sample is not held
