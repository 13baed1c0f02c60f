"""The embedded cell's model servers (LM, vision, audio, custom), part of ``gateway.cell``."""
