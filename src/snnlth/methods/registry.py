"""The method registry: every ticket-search method is one module that registers a :class:`MethodSpec` under its name.

The runner, the CLI's ``--method`` values, the labels a report shows, the ``--from`` checks and the fields that name a
run all come from here. Adding a method is one file (plus its tests)::

    def run_toy(kit: MethodKit, source: RunStore | None) -> MethodResult:
        ...  # kit.train(...) its phases, return their levels
    register_method(MethodSpec("toy", "Toy", run_toy, "one line for `snnlth methods`", fields=("rounds",)))

(:class:`snnlth.methods.kit.MethodKit` is what a method works with; docs/extending.md has a whole method.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from snnlth.config import AUTO_FIELDS, EARLY_TIME_FIELDS, SearchConfig, SearchRunConfig
from snnlth.errors import ConfigError
from snnlth.registry import Registry

# [search] fields every method may read; everything else belongs to the methods that declare it
COMMON_FIELDS = ("method", "checkpoint_every", "exclude")

# the conditions a baseline shares with its --from source, so that the comparison is fair
SAME_AS_SOURCE = (("model", "timesteps"), ("train", "epochs"), ("search", "rewind_epoch"), ("data", "train_subset"),
                  ("data", "test_subset"), ("data", "resize"), ("search", "prune_rate"), ("search", "scope"),
                  ("search", "exclude"), ("data", "augment"), ("model", "neuron"), ("model", "bn_time"),
                  ("model", "tau"), ("model", "v_threshold"), ("model", "surrogate"), ("model", "alpha"),
                  ("train", "lr"), ("train", "batch_size"), ("train", "momentum"), ("train", "weight_decay"),
                  ("train", "amp"))


@dataclass
class MethodResult:
    """What every method returns: its levels (entries of ``summary.json["levels"]``, made by ``Trained.level``),
    plus the Early-Time choice, the Early-Bird records and any other summary keys of its own (``extra``)."""

    levels: list[dict]
    early_time: dict | None = None
    eb: list[dict] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_rounds(cls, rounds, **extra: Any) -> MethodResult:
        """The result of a round-based method (a :class:`~snnlth.methods.rounds.RoundsResult`): its levels, and its
        modifiers' records (``early_time``; ``round_stop`` as an extra summary key)."""
        records = dict(rounds.records)
        return cls(rounds.levels, records.pop("early_time", None), extra={**records, **extra})


@dataclass(frozen=True)
class MethodSpec:
    """A ticket-search method.

    Attributes:
        name: the ``--method`` value.
        label: how reports name it (the paper's spelling); ``+ET`` is appended for Early-Time runs.
        run: ``run(kit, source) -> MethodResult``, ``kit`` a :class:`~snnlth.methods.kit.MethodKit`, ``source``
            the ``--from`` run (a RunStore) or None.
        summary: one line for ``snnlth methods``.
        fields: the ``[search]`` fields it reads besides :data:`COMMON_FIELDS`. Only these (and the Early-Time
            fields when it runs with Early-Time) name a run, so a field a method ignores never splits its runs.
        unused: ``unused(cfg)``: fields of ``fields`` that this particular config does not read (Early-Bird reads
            ``rounds`` and ``prune_rate`` only for ``--target-sparsity imp``).
        early_time: combines with ``--early-time``.
        early_time_fields: the Early-Time fields it reads when it does (besides the ``auto`` test's).
        round_stop: takes ``--round-stop mask`` (rounds ended once their next mask has settled).
        source: ``"none"``, ``"optional"`` or ``"required"``: whether it takes ``--from RUN_DIR``.
        source_methods: methods whose runs may be its source (empty: any).
        same_as_source: ``(section, field)`` pairs that must equal the source run's.
        check_source: ``check_source(cfg, source_config, source_path)``, more checks of the source (raise
            :class:`ConfigError`).
        needs_twin: it trains the model's ANN twin too (only snnlth's own architectures have one).
        check: ``check(cfg)``, more checks of the config of the method's own (raise :class:`ConfigError`).
    """

    name: str
    label: str
    run: Callable[..., MethodResult]
    summary: str
    fields: tuple[str, ...] = ()
    unused: Callable[[SearchRunConfig], tuple[str, ...]] | None = None
    early_time: bool = False
    early_time_fields: tuple[str, ...] = EARLY_TIME_FIELDS
    round_stop: bool = False
    source: str = "none"
    source_methods: tuple[str, ...] = ()
    same_as_source: tuple[tuple[str, str], ...] = SAME_AS_SOURCE
    check_source: Callable[..., None] | None = None
    needs_twin: bool = False
    check: Callable[[SearchRunConfig], None] | None = None

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(SearchConfig)}
        unknown = sorted((set(self.fields) | set(self.early_time_fields)) - known)
        if unknown:
            raise ValueError(f"method {self.name!r} declares unknown [search] fields {unknown}")
        if self.source not in ("none", "optional", "required"):
            raise ValueError(f"method {self.name!r}: source must be none, optional or required")

    def label_of(self, cfg: SearchRunConfig) -> str:
        """The report label: ``IMP``, ``IMP+ET``, ``IMP+ES``, ``IMP+ET+ES``; ``+SS`` for IMP's rounds under a
        search schedule of their own (``--search-epochs``, ``--search-schedule``)."""
        et = "+ET" if cfg.search.early_time != "off" else ""
        es = "+ES" if self.round_stop and cfg.search.round_stop != "off" else ""
        ss = "+SS" if self.round_stop and cfg.search_differs else ""
        return f"{self.label}{et}{es}{ss}"

    def used_fields(self, cfg: SearchRunConfig) -> set[str]:
        """The ``[search]`` fields that can change this run's results."""
        used = set(COMMON_FIELDS) | (set(self.fields) - set(self.unused(cfg) if self.unused else ()))
        if self.source != "none":
            used.add("from_run")
        if self.early_time and cfg.search.early_time != "off":
            used |= set(self.early_time_fields)
            if cfg.search.early_time == "auto":
                used |= set(AUTO_FIELDS)
        return used

    def ignored(self, cfg: SearchRunConfig) -> tuple[str, ...]:
        """``section.field`` names left out of the run's identity (fields this method does not read)."""
        return tuple(f"search.{f.name}" for f in dataclasses.fields(SearchConfig)
                     if f.name not in self.used_fields(cfg))

    def validate(self, cfg: SearchRunConfig) -> None:
        """Method-level checks of a config, before anything is loaded or written."""
        s = cfg.search
        if s.early_time != "off" and not self.early_time:
            usable = " or ".join(n for n in METHODS.names() if METHODS.get(n).early_time)
            raise ConfigError(f"--early-time works with --method {usable} only, not --method {self.name}; "
                              "drop --early-time")
        if s.round_stop != "off" and not self.round_stop:
            usable = " or ".join(n for n in METHODS.names() if METHODS.get(n).round_stop)
            raise ConfigError(f"--round-stop works with --method {usable} only, not --method {self.name}; "
                              "drop --round-stop")
        if (s.search_epochs is not None or s.search_schedule is not None) and "search_epochs" not in self.fields:
            usable = " or ".join(n for n in METHODS.names() if "search_epochs" in METHODS.get(n).fields)
            raise ConfigError(f"--search-epochs and --search-schedule work with --method {usable} only, not "
                              f"--method {self.name}; drop them")
        if self.source == "required" and not s.from_run:
            raise ConfigError(f"--method {self.name} needs --from RUN_DIR (a finished search whose masks to reuse)")
        if self.source == "none" and s.from_run:
            raise ConfigError(f"--method {self.name} takes no --from; drop it")
        if self.needs_twin and cfg.model.neuron != "lif":
            raise ConfigError(f"--method {self.name} searches on the ANN twin and trains the SNN: use --neuron lif")
        if self.check is not None:
            self.check(cfg)


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec) -> MethodSpec:
    METHODS.register(spec.name)(spec)
    return spec


def method_of(cfg: SearchRunConfig) -> MethodSpec:
    """The registered method of ``cfg`` (an unknown name is a :class:`ConfigError` listing the known ones)."""
    return METHODS.get(cfg.search.method)


def describe_methods() -> list[tuple[str, str]]:
    """(name, one-line summary) of every registered method, for ``snnlth methods``."""
    out = []
    for name in METHODS.names():
        spec = METHODS.get(name)
        mods = [m for m, ok in (("--early-time", spec.early_time), ("--round-stop mask", spec.round_stop)) if ok]
        extra = f" (+ {', '.join(mods)})" if mods else ""
        src = {"required": "; needs --from RUN_DIR", "optional": "; optional --from RUN_DIR"}.get(spec.source, "")
        out.append((name, f"{spec.summary}{extra}{src}"))
    return out
