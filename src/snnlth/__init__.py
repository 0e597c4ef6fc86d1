"""snnlth: lottery tickets in deep spiking neural networks."""

__version__ = "0.2.0"


def train(*args, **kwargs):
    """Train one model; see :func:`snnlth.api.train` (imported lazily so ``import snnlth`` stays light)."""
    from snnlth.api import train as _train

    return _train(*args, **kwargs)


def search(*args, **kwargs):
    """Run a ticket search; see :func:`snnlth.api.search`."""
    from snnlth.api import search as _search

    return _search(*args, **kwargs)


def load_ticket(*args, **kwargs):
    """Rebuild a model with its masks from a ticket file; see :func:`snnlth.export.load_ticket`."""
    from snnlth.export import load_ticket as _load

    return _load(*args, **kwargs)


__all__ = ["__version__", "load_ticket", "search", "train"]
