"""`make soak`: a long mixed load against the whole stack with processes killed in the middle;
its figures go to RELIABILITY.md."""
