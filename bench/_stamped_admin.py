"""The embedded cell's admin server, taking the TestLM override that
bench._stamped_modelserver reads.

    python -m bench._stamped_admin --sax-root ROOT --port 10000 ...

Same program as ``python -m gateway.cell.admin``, except that TestLM's overrides include
``bench_stamp``: the admin refuses, at publish, an override TestLM does not take.
"""

from __future__ import annotations

from bench._stamped_modelserver import STAMP_OVERRIDE
from gateway.cell.admin.__main__ import main
from gateway.cell.models import test_lm

test_lm.OVERRIDES = test_lm.OVERRIDES | {STAMP_OVERRIDE}

if __name__ == "__main__":
    main()
