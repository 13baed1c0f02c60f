"""The ``saxgw`` command: run the stack, and talk to a gateway with saxutil's verbs.

Role: the edge, where settings are built. May import every role; nothing imports it.
"""
