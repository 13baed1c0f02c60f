"""Starting the stack's processes: the embedded cell, the gateway and Envoy, each a child.

Role: process wiring. May import ``gateway.cell``, ``gateway.service``, ``gateway.config`` and
``gateway.common``; never the CLI.
"""
