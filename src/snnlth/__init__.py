"""snnlth: lottery tickets in deep spiking neural networks."""

__version__ = "0.1.0"
