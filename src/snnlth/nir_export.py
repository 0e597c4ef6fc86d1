"""Tickets as NIR graphs (the Neuromorphic Intermediate Representation, ``nir`` 1.0.8), the form spikingjelly,
snntorch, norse, Lava and SpiNNaker toolchains exchange SNNs in: ``to_nir(source)`` and ``write_graph``.

snnlth's architectures are written layer by layer (:mod:`snnlth.interchange.models`), an adapted network when it is
a chain of standard layers (:mod:`snnlth.interchange.chain`); each layer's exact form is in
:mod:`snnlth.interchange.nodes` and docs/api.md. The readout (logits summed over T) stays outside the graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from snnlth.errors import ConfigError
from snnlth.interchange.chain import chain_graph
from snnlth.interchange.models import BUILDERS
from snnlth.interchange.nodes import TIE_RULE

USER_NETWORK = ("is a ticket of your own network: export it from Python with snnlth.to_nir(result, "
                "input_shape=(C, H, W)), result being what find_ticket returned (or a model holding the ticket)")


def _nir():
    try:
        import nir
    except ImportError:
        raise ConfigError("NIR export needs the nir package: pip install 'snnlth[nir]' (nir 1.0.8)") from None
    return nir


def model_graph(model: nn.Module, input_shape: tuple[int, ...], dt: float = 1e-4,
                metadata: dict[str, Any] | None = None):
    """The NIR graph of ``model`` (an snnlth model or an adapted network; BatchNorm folded with its running
    statistics) for samples of ``input_shape`` (C, H, W); ``metadata`` values are stored as JSON strings. A layer
    with no NIR form is a one-line :class:`ConfigError` naming it."""
    nir = _nir()
    builder = BUILDERS.get(type(model))
    if builder is not None:
        g = builder(nir, model, tuple(input_shape), dt)
    elif hasattr(model, "net") and hasattr(model, "run"):  # an adapter (snnlth.adapters)
        g = chain_graph(nir, model, tuple(input_shape), dt)
    else:
        raise ConfigError(f"NIR export: the model {type(model).__name__} is neither one of snnlth's architectures "
                          f"({', '.join(sorted(c.__name__ for c in BUILDERS))}) nor an adapted network; wrap it with "
                          "snnlth.adapters.spikingjelly(net)")
    out_shape = g.out_shape or (g.nodes[g.last].weight.shape[0],)  # a chain says; snnlth's models end in a readout
    g.add("output", nir.Output(output_type={"output": np.array(out_shape)}))
    meta = {k: json.dumps(v) for k, v in {"dt": dt, "tie_rule": TIE_RULE, **(metadata or {})}.items()}
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=meta)


def write_graph(graph: Any, out: str | Path) -> None:
    """``nir.write`` into a private temporary directory, then written over ``out`` atomically (fsynced, renamed): a
    failed write leaves ``out`` as it was, and two writers never share a temporary file."""
    import tempfile

    from snnlth.rundir.atomic import atomic_write_bytes

    nir = _nir()
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a directory; create it or give --out in an existing one")
    with tempfile.TemporaryDirectory() as tmp:
        nir.write(str(Path(tmp) / "graph.nir"), graph)
        atomic_write_bytes(out, (Path(tmp) / "graph.nir").read_bytes())


def run_ticket(run_dir: str | Path, round_: int | None = None, sparsity: float | None = None):
    """``(ticket, level)``: the :class:`~snnlth.export.Ticket` of one level of a finished run of one of snnlth's
    architectures (``snnlth export``'s choice of level) and that level's summary entry."""
    import tempfile

    from snnlth.export import export_ticket, load_ticket

    with tempfile.TemporaryDirectory() as tmp:
        info = export_ticket(run_dir, Path(tmp) / "ticket.safetensors", round_, sparsity)
        if info["metadata"]["model"].startswith("user:"):
            raise ConfigError(f"{run_dir} {USER_NETWORK}")
        return load_ticket(Path(tmp) / "ticket.safetensors"), info["level"]


def _ticket_of(source: Any):
    """The :class:`~snnlth.export.Ticket` of a run directory (its sparsest final level), an snnlth
    ``TicketSearch``, an exported ticket file or a ticket."""
    from snnlth.export import Ticket, load_ticket

    if isinstance(source, Ticket):
        return source
    path = Path(getattr(source, "run_dir", source))
    if not path.is_file():
        return run_ticket(path)[0]
    try:
        return load_ticket(path)
    except ConfigError as exc:
        if "your own network" in str(exc):
            raise ConfigError(f"{path} {USER_NETWORK}") from None
        raise


def _user_model(source: Any, timesteps: int | None):
    """``(adapted model, metadata)`` of a find_ticket result (its best ticket applied) or of a network."""
    from snnlth.adapters import wrap

    if hasattr(source, "apply") and hasattr(source, "best"):
        best, model = source.best, source.apply()
        info = {"timesteps": int(timesteps or best.timesteps), "sparsity_prunable": best.sparsity,
                "sparsity_all": best.sparsity_all, "test_accuracy": best.accuracy,
                "sparsity_per_layer": {n: 1.0 - float(m.float().mean()) for n, m in best.masks.items()},
                "run": str(source.run_dir)}
        return wrap(model, best.timesteps), info
    model = wrap(source, timesteps)
    info = {"timesteps": int(timesteps or getattr(model, "timesteps", None) or 0) or None}
    return model, info


def _is_user(source: Any) -> bool:
    """A network, or the result of a search of a user's own network."""
    from snnlth.models.catalog import USER_MODEL
    from snnlth.rundir.store import RunStore

    if isinstance(source, nn.Module):
        return True
    if not (hasattr(source, "apply") and hasattr(source, "run_dir")):
        return False
    return RunStore(source.run_dir).read_config()["model"]["model"].startswith(USER_MODEL)


def to_nir(source: Any, dt: float = 1e-4, timesteps: int | None = None, input_shape: tuple[int, ...] | None = None):
    """The NIR graph (``nir.NIRGraph``) of a ticket. ``source``: a run directory (its sparsest final level), a
    :class:`~snnlth.TicketSearch`, a file written by ``snnlth export``, a loaded ticket, or a network holding a
    ticket (an snnlth model, an adapter, or a spikingjelly network). ``timesteps``: the T written into the metadata
    (default the ticket's). ``input_shape``: (C, H, W) of one sample, needed for a user's own network. Write it with
    :func:`write_graph` (or ``nir.write(path, graph)``)."""
    from snnlth import __version__

    if not dt > 0:
        raise ConfigError(f"dt must be > 0 (got {dt}); NIR's importers use 1e-4")
    if timesteps is not None and timesteps < 1:
        raise ConfigError(f"--timesteps must be >= 1 (got {timesteps})")
    if _is_user(source):
        if input_shape is None:
            raise ConfigError("to_nir needs input_shape=(C, H, W) of one sample for your own network")
        model, info = _user_model(source, timesteps)
        info.update(input="one sample as the network takes it, the same at every step (direct coding)",
                    snnlth_version=__version__, readout=_READOUT, model=type(getattr(model, "net", model)).__name__)
        return model_graph(model, input_shape, dt, info)
    return _ticket_graph(_ticket_of(source), dt, timesteps, __version__)


_READOUT = "logits = the output summed over the T steps (outside the graph); prediction = argmax"


def _ticket_graph(ticket: Any, dt: float, timesteps: int | None, version: str):
    meta, model = ticket.metadata, ticket.model
    shape = (int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))
    per_layer = {n: 1.0 - float(m.float().mean()) for n, m in ticket.masks.items()}
    resize = getattr(getattr(model, "input_transform", None), "size", None)
    info = {"timesteps": int(timesteps or meta["timesteps"]), "sparsity_prunable": float(meta["sparsity_prunable"]),
            "sparsity_all": float(meta["sparsity_all"]), "sparsity_per_layer": per_layer, "readout": _READOUT,
            "input": "raw images in [0, 1], the same image at every step (direct coding)"
                     + (f"; resize them to {resize}x{resize} first (NIR cannot express resizing)" if resize else ""),
            "snnlth_version": version, "run": json.loads(meta["config"]), "model": meta["model"],
            "test_accuracy": float(meta["test_accuracy"])}
    return model_graph(model, shape, dt, info)
