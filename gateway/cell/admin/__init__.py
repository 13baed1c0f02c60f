"""The embedded cell's admin server (Publish, WatchLoc, Join, ...), part of ``gateway.cell``."""
