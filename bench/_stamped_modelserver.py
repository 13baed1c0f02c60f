"""The embedded cell's model server, with emission timestamps in streamed tokens.

    python -m bench._stamped_modelserver --sax-root ROOT --port 10001 ...

Same program as ``python -m gateway.cell.modelserver``, except that a TestLM published with
the override ``bench_stamp=1`` appends ``@<time.time_ns()>`` to every streamed token at the
moment the model yields it. A client on the same machine compares that with its own clock on
arrival, so the token delivery lag needs no assumed schedule (``asyncio.sleep`` drifts by up
to a millisecond per token). Unary calls and other models are untouched.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Mapping

from gateway.cell.models import test_lm
from gateway.cell.models.base import ExtraInputs, StreamStep
from gateway.cell.modelserver.__main__ import main

STAMP_OVERRIDE = "bench_stamp"

_init = test_lm.TestLM.__init__
_stream = test_lm.TestLM.generate_stream


def _stamped_init(self: test_lm.TestLM, *, overrides: Mapping[str, str]) -> None:
    _init(self, overrides=overrides)
    self._bench_stamp = overrides.get(STAMP_OVERRIDE) == "1"  # type: ignore[attr-defined]


async def _stamped_stream(
    self: test_lm.TestLM, text: str, extra: ExtraInputs
) -> AsyncIterator[StreamStep]:
    async for step in _stream(self, text, extra):
        if getattr(self, "_bench_stamp", False):
            stamp = f"@{time.time_ns()}"
            step = dataclasses.replace(step, pieces=tuple(p + stamp for p in step.pieces))
        yield step


test_lm.TestLM.__init__ = _stamped_init  # type: ignore[method-assign]
test_lm.TestLM.generate_stream = _stamped_stream  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
