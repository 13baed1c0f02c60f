"""The ``saxgw`` command: run the stack, and talk to a gateway with saxutil's verbs."""
