"""A stand-in for a model server's event lines on stdout, as `gateway.cell._launcher` reads
them: "listening", then ``N`` streams cancelled (one model, then another), then it waits for its
stdin to end, as a server run with --exit-on-stdin-eof does. Run as
``python -m tests.integration._events_server N``."""

from __future__ import annotations

import sys


def main() -> None:
    count = int(sys.argv[1])
    print("listening 127.0.0.1:1", flush=True)
    for i in range(count):
        model = "/sax/test/a" if i < count - 1 else "/sax/test/b"
        print(f"cancelled model={model} tokens_sent={i} at={i}.0", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
