"""Benchmarks of sax-gateway: `make bench` (or `python -m bench`) runs them all in one go.

The stack is started here (`_stack`), load comes from real tools where they fit (`_loadgen`:
wrk, h2load; a grpc.aio client for the direct path), each measurement is its own module
(`_unary`, `_streaming`, `_capacity`, `_discovery`, `_profile`) and `_report` writes
bench/results.json and the generated part of BENCHMARKS.md.
"""
