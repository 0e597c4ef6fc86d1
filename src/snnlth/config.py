"""Typed, validated configuration: one frozen dataclass per concern.

Every field maps to one CLI flag and one TOML key (``timesteps`` ↔ ``--timesteps`` ↔ ``[model] timesteps``);
:mod:`snnlth.config_io` generates both from these fields, so this file is the single source of truth. Two kinds of
section: the *recipe* (``[data]``, ``[model]``, ``[train]``, ``[search]``: everything that changes results; a run is
named by the recipe fields that differ from their defaults) and ``[runtime]`` (where the data lies, the device,
kernels, compilation, CUDA graphs, evaluation and checkpoint cadence: how fast and where a run goes, never what it
computes, so a run may be resumed with other values). Field metadata: ``help`` (flag help), ``choices``,
``identity_default``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from snnlth.errors import ConfigError

_SAME = object()


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, flag: str | None = None,
       identity_default: Any = _SAME) -> Any:
    """A config field. ``identity_default``: the value the run hash leaves out, when it differs from ``default``.
    It is the value that reproduces runs made before the field existed (or before its default changed), so a
    changed default gives runs a new name instead of resuming a directory whose results were computed otherwise."""
    meta = {"help": help, "choices": choices, "flag": flag,
            "identity_default": default if identity_default is _SAME else identity_default}
    return field(default=default, metadata=meta)


_FLAG_OVERRIDES = {"from_run": "--from"}


def flag_name(name: str) -> str:
    """The CLI flag of a config field (``prune_rate`` -> ``--prune-rate``; ``from_run`` -> ``--from``)."""
    return _FLAG_OVERRIDES.get(name, "--" + name.replace("_", "-"))


def _require(ok: bool, name: str, value: Any, rule: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{flag_name(name)} {rule} (got {value!r}); {fix}")


PYTHON_RECIPE = "python:"  # --optimizer / --loss values that name a Python callable (snnlth.engine.recipe)
_PYTHON_OK = ("optimizer", "loss")


def _check_choices(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        choices = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if f.name in _PYTHON_OK and isinstance(value, str) and value.startswith(PYTHON_RECIPE):
            continue  # given as a callable in Python: find_ticket(optimizer=...), search(..., loss=...)
        if choices and value not in choices:
            raise ConfigError(f"{flag_name(f.name)} must be one of {', '.join(choices)} (got {value!r})")


def _positive_or_none(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    _require(value is None or value >= 1, name, value, "must be a positive number of images",
             f"drop {flag_name(name)} to use all images")


@dataclass(frozen=True)
class DataConfig:
    """What data to train and evaluate on."""

    dataset: str = _f("fmnist", "dataset name (fmnist, cifar10, cifar100, svhn, tinyimagenet)")
    train_subset: int | None = _f(None, "train on a stratified, seeded subset of N images")
    test_subset: int | None = _f(None, "evaluate on a stratified subset of N test images (default: all)")
    augment: bool = _f(True, "batched on-device augmentation: random crop (pad 4), h-flip, and Cutout 16 px for CIFAR "
                         "(cut before normalising: the hole is black)")
    resize: int | None = _f(None, "resize images to this side length once at load (the paper uses 32 for F-MNIST)")

    def __post_init__(self) -> None:
        _positive_or_none(self, "train_subset")
        _positive_or_none(self, "test_subset")
        _require(self.resize is None or 8 <= self.resize <= 512, "resize", self.resize, "must be in [8, 512]",
                 "drop --resize to keep the native size")


@dataclass(frozen=True)
class ModelConfig:
    """Which network, and its spiking neurons."""

    model: str = _f("convnet", "architecture (convnet, lenet300, vgg16, resnet19)")
    neuron: str = _f("lif", "lif for the SNN, relu for its ANN twin", choices=("lif", "relu"))
    timesteps: int = _f(5, "number of timesteps T")
    tau: float = _f(4.0 / 3.0, "LIF membrane time constant (decay 1 - 1/tau per step)")
    v_threshold: float = _f(1.0, "LIF firing threshold (hard reset to 0, reset detached)")
    surrogate: str = _f("atan", "surrogate gradient (atan, sigmoid)")
    alpha: float = _f(2.0, "surrogate sharpness alpha")
    bn_time: str = _f("per-step", "BatchNorm over time: per-step (statistics of each timestep, running statistics "
                      "updated T times per batch, as the paper's code) or pooled (over all T·B samples)",
                      choices=("per-step", "pooled"), identity_default="pooled")

    def __post_init__(self) -> None:
        _check_choices(self)
        _require(self.timesteps >= 1, "timesteps", self.timesteps, "must be >= 1", "use e.g. --timesteps 5")
        _require(self.tau > 1.0, "tau", self.tau, "must be > 1", "the paper uses --tau 1.3333")
        _require(self.v_threshold > 0, "v_threshold", self.v_threshold, "must be > 0", "the paper uses 1.0")
        _require(self.alpha > 0, "alpha", self.alpha, "must be > 0", "the paper uses 2.0")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, seed, precision."""

    epochs: int = _f(5, "training epochs")
    batch_size: int = _f(128, "training batch size")
    lr: float = _f(0.1, "initial learning rate, then --schedule per epoch (the paper: 0.3 for VGG16/ResNet19 with "
                      "SGD; spikingjelly's and snntorch's tutorials: 1e-3 to 1e-2 with Adam)")
    optimizer: str = _f("sgd", "sgd (with --momentum; the paper's), adam or adamw (with --betas); the state starts "
                        "fresh at every rewind", choices=("sgd", "adam", "adamw"))
    momentum: float = _f(0.9, "SGD momentum")
    betas: tuple[float, ...] = _f((0.9, 0.999), "Adam/AdamW: the two decay rates of the moment estimates")
    weight_decay: float = _f(5e-4, "weight decay: as an L2 term of the gradient for sgd and adam, decoupled for adamw "
                             "(really applied, unlike the paper's code)")
    schedule: str = _f("cosine", "learning rate per epoch: cosine (to 0, the paper's), constant, step (x0.1 at 50 "
                       "and 75 percent of the epochs, the official code's --scheduler step) or linear (to 0)",
                       choices=("cosine", "constant", "step", "linear"))
    warmup_epochs: int = _f(0, "epochs of linear warm-up to --lr before the schedule (counted within --epochs)")
    loss: str = _f("ce", "ce: the mean over t of the cross-entropy of each step's output (the paper's); ce-rate: "
                   "the cross-entropy of the output averaged over T; mse-rate: the MSE between the output averaged "
                   "over T and the one-hot labels (spikingjelly's tutorials)", choices=("ce", "ce-rate", "mse-rate"))
    seed: int = _f(0, "random seed (init, data order, augmentation)")
    amp: bool = _f(False, "bf16 autocast (CUDA; LIF state stays fp32)")
    sync_bn: bool = _f(False, "data-parallel runs (torchrun): BatchNorm statistics over the whole global batch "
                       "instead of each rank's shard, as one process would compute them (changes results: part of "
                       "the run's name)")
    quirks: str = _f("paper", "paper: the paper's text; official: where the official code differs from it (weight "
                     "decay lost as dampening, reversed max-normalised KL over t in 2..4 in train mode, Early-Bird at "
                     "2x lr retrained from init, no fixed seed); see docs/methods.md", choices=("paper", "official"))

    def __post_init__(self) -> None:
        _check_choices(self)
        _require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1", "use e.g. --epochs 5")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1", "use e.g. --batch-size 128")
        _require(self.lr > 0, "lr", self.lr, "must be > 0", "use e.g. --lr 0.1")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)", "use 0.9")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", self.betas,
                 "must be two numbers in [0, 1)", "use --betas 0.9 0.999")
        _require(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", self.warmup_epochs,
                 f"must be in [0, --epochs {self.epochs})", "use e.g. --warmup-epochs 1")
        _require(self.quirks != "official" or self.optimizer == "sgd", "optimizer", self.optimizer,
                 "does not go with --quirks official (the official code's SGD)", "use --optimizer sgd")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0", "use 5e-4")
        _require(self.seed >= 0, "seed", self.seed, "must be >= 0", "use e.g. --seed 0")


@dataclass(frozen=True)
class RuntimeConfig:
    """How and where a run goes: data files, device, kernels, compilation, evaluation and checkpoint cadence.
    Nothing here changes what a run trains, so none of it names a run (a run may be resumed with other values)."""

    data_dir: str | None = _f(None, "directory holding the dataset files (else $SNNLTH_DATA, then system dirs)")
    cache_dir: str | None = _f(None, "where decoded datasets are cached (TinyImageNet; default: next to the data)")
    device: str = _f("auto", "auto, cpu or cuda", choices=("auto", "cpu", "cuda"))
    lif_kernel: str = _f("auto", "LIF loop over T: eager (no start-up cost), compiled (torch.compile: one fused "
                         "kernel; a one-off compile of 7-25 s on CPU), auto (compiled on CUDA, and on CPU from the "
                         "phase on where a run's training reaches 3e10 neuron-timesteps, which repays the compile)",
                         choices=("auto", "eager", "compiled"))
    compile: bool = _f(False, "torch.compile the whole model for training and evaluation (CUDA; on CPU the compile "
                       "rarely pays off)")
    channels_last: bool = _f(False, "channels-last memory format for the model and its inputs (CUDA with --amp; "
                             "on CPU each convolution already gets its faster layout)")
    cuda_graph: bool = _f(True, "CUDA: capture the training step (forward, loss, backward) once as a CUDA graph and "
                          "replay it for every batch of the same shape (one process, snnlth's own neurons; a step "
                          "that cannot be captured trains eagerly with a warning)")
    on_nan: str = _f("stop", "a NaN/inf training loss: stop (one line naming phase, epoch and batch; the last "
                     "checkpoint is kept) or skip-batch (no update from that batch; counted per epoch)",
                     choices=("stop", "skip-batch"))
    allow_chance: bool = _f(False, "go on with a dense network that does not learn (by default the run stops with "
                            "what was seen when no spike reaches the output, the loss holds at chance after the "
                            "first epoch, or training and test accuracy end the dense phase at <= 1.5x chance)")
    eval_batch_size: int = _f(256, "evaluation batch size")
    eval_every: int = _f(1, "evaluate on the test set every N epochs (the last epoch of every phase always is; "
                         "the paper's code: 50)")
    checkpoint_every: int = _f(1, "write a resumable checkpoint every N epochs")

    def __post_init__(self) -> None:
        _check_choices(self)
        _require(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, "must be >= 1",
                 "use e.g. --eval-batch-size 1000")
        _require(self.eval_every >= 1, "eval_every", self.eval_every, "must be >= 1", "use e.g. --eval-every 10")
        _require(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "must be >= 1", "use 1")


# where the [runtime] fields lived before 0.4: config files and saved runs that still have them there are read
RUNTIME_LEGACY_SECTIONS = {"data_dir": "data", "cache_dir": "data", "checkpoint_every": "search",
                           **{name: "train" for name in ("device", "lif_kernel", "compile", "channels_last",
                                                         "cuda_graph", "on_nan", "eval_batch_size", "eval_every")}}


@dataclass(frozen=True)
class TrainRunConfig:
    """Everything ``snnlth train`` needs. Sections map to TOML tables ``[data]``, ``[model]``, ``[train]`` (the
    recipe) and ``[runtime]``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def _parse_early_time(value: str) -> str | int:
    if value in ("off", "auto"):
        return value
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--early-time must be off, auto or a number of timesteps (got {value!r})") from None


def parse_retrain_at(item: str, flag: str = "--retrain-at") -> str | int | float:
    if item in ("last", "all"):
        return item
    try:
        return int(item)
    except ValueError:
        pass
    try:
        value = float(item)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise ConfigError(f"{flag} takes last, all, round numbers or sparsities in [0, 1) (got {item!r})")
    return value


def _parse_targets(items: tuple[Any, ...]) -> tuple[str, ...]:
    """Early-Bird targets in canonical form: ``imp``, or sparsities in (0, 1) written as ``repr(float)``."""
    out = []
    for item in items:
        if item == "imp":
            out.append("imp")
            continue
        try:
            value = float(item)
        except (TypeError, ValueError):
            value = -1.0
        _require(0 < value < 1, "target_sparsity", item, "takes imp or sparsities in (0, 1)",
                 "use e.g. --target-sparsity imp or --target-sparsity 0.5 0.9")
        out.append(repr(value))
    _require(len(out) >= 1, "target_sparsity", items, "needs at least one target", "use --target-sparsity imp")
    return tuple(dict.fromkeys(out))


# [search] fields of the two modifiers a method may combine with (a run's label says which it used: +ET, +ES)
EARLY_TIME_FIELDS = ("early_time", "retrain_at")
AUTO_FIELDS = ("et_threshold", "et_warmup_epochs", "et_batch", "et_kl")  # read only by --early-time auto
ROUND_STOP_FIELDS = ("round_stop", "round_stop_window", "round_stop_threshold")
SEARCH_RUN_FIELDS = ("search_epochs", "search_schedule")  # +SS: IMP's rounds under a schedule of their own
MODIFIER_FIELDS = (*EARLY_TIME_FIELDS, *AUTO_FIELDS, *ROUND_STOP_FIELDS, *SEARCH_RUN_FIELDS)


@dataclass(frozen=True)
class SearchConfig:
    """How to search for the ticket. Early-Time is a modifier of ``imp`` and ``eb``, not a method."""

    method: str = _f("imp", "ticket-search method, one of those `snnlth methods` lists (imp, eb, random, reinit)")
    rounds: int = _f(4, "pruning rounds after the dense round 0 (levels 0..K; the paper: 14)")
    prune_rate: float = _f(0.25, "fraction of the surviving weights removed per round")
    scope: str = _f("global", "magnitude ranking across all layers (global) or per layer (local)",
                    choices=("global", "local"))
    exclude: tuple[str, ...] = _f((), "prunable tensors never pruned: whole names or dotted prefixes (features.1)")
    rewind_epoch: int = _f(0, "rewind survivors to their values after this many epochs of the dense run "
                            "(0 = init; the paper: 20 of 300)")
    target_sparsity: tuple[str, ...] = _f(("imp",), "Early-Bird: target sparsities tracked in one dense run; imp = "
                                          "the sparsities IMP reaches in --rounds rounds at --prune-rate",
                                          identity_default=("0.9",))
    eb_window: int = _f(5, "Early-Bird: number of recent masks compared (q)")
    eb_threshold: float = _f(0.02, "Early-Bird: stop when the max mask distance falls below this (tau)")
    early_time: str = _f("off", "Early-Time ticket: off, auto (choose T_early by KL) or a number of timesteps")
    et_threshold: float = _f(0.6, "Early-Time: normalised-KL threshold lambda")
    et_warmup_epochs: int = _f(2, "Early-Time auto: epochs at full T before choosing T_early")
    et_batch: int = _f(1000, "Early-Time auto: training images in the fixed batch the KL is measured on")
    et_kl: str = _f("paper", "KL direction: paper = KL(P_t || P_T) (Eq. 1), code = KL(P_T || P_t)",
                    choices=("paper", "code"))
    retrain_at: tuple[str, ...] = _f(("last",), "levels retrained at full T off the search path (Early-Time, round "
                                     "stop): last, all, round numbers or sparsities")
    round_stop: str = _f("off", "IMP: end each round early once its next mask has settled (Early-Bird's rule per "
                         "round): off, or mask (stop when the mask the round would produce differs from each of the "
                         "previous --round-stop-window masks in < --round-stop-threshold of the round's weights)",
                         choices=("off", "mask"))
    round_stop_window: int = _f(3, "--round-stop mask: number of recent per-epoch masks compared (q)")
    round_stop_threshold: float = _f(0.05, "--round-stop mask: stop when the max distance falls below this (tau), "
                                     "as a fraction of the weights alive in the round")
    search_epochs: int | None = _f(None, "epochs of the search runs (IMP's rounds, gmp's run, lrr's dense run), "
                                   "whose accuracies are not the tickets'; the final tickets keep --epochs "
                                   "(default: --epochs)")
    search_schedule: str | None = _f(None, "learning rate schedule of the search runs: cosine, constant, step or "
                                     "linear (default: --schedule); a short search that anneals early settles its "
                                     "masks early")
    gmp_end: float = _f(0.75, "gmp: fraction of the search run at which the top sparsity is reached (t1); the mask "
                        "is fixed afterwards and the run ends there")
    gmp_every: int | None = _f(None, "gmp: training steps between two pruning steps (default: a quarter of an "
                               "epoch)")
    lrr_jump: int = _f(5, "lrr: IMP levels skipped per round (5 at --prune-rate 0.25: 76 percent of the surviving "
                       "weights per round; the levels are exactly IMP's)")
    lrr_epochs: int = _f(1, "lrr: epochs of each round's retraining from the current weights, the lr decaying "
                         "from its peak again (--search-schedule)")
    t_pre: int | None = _f(None, "oneshot: timesteps of the dense training the mask is drawn from (default: T)")
    t_post: int | None = _f(None, "oneshot: timesteps the tickets are retrained at (default: T)")
    reinit_levels: tuple[str, ...] = _f(("last",), "reinit: the levels of --from trained from a fresh init: last, "
                                        "all, round numbers or sparsities")
    from_run: str | None = _f(None, "reinit/random: a finished search run whose masks to reuse")
    preset: str | None = _f(None, "start from one of the paper's settings (`snnlth presets` lists them); a config "
                            "file and flags override it; the run is named by all the values it sets")

    def __post_init__(self) -> None:
        _check_choices(self)
        _require(self.rounds >= 1, "rounds", self.rounds, "must be >= 1", "use e.g. --rounds 4")
        _require(0 < self.prune_rate < 1, "prune_rate", self.prune_rate, "must be in (0, 1)", "the paper uses 0.25")
        _require(self.rewind_epoch >= 0, "rewind_epoch", self.rewind_epoch, "must be >= 0", "use 0 to rewind to init")
        object.__setattr__(self, "target_sparsity", _parse_targets(self.target_sparsity))
        _require(self.eb_window >= 2, "eb_window", self.eb_window, "must be >= 2", "the paper uses 5")
        _require(0 < self.eb_threshold < 1, "eb_threshold", self.eb_threshold, "must be in (0, 1)", "use 0.02")
        _require(self.round_stop_window >= 2, "round_stop_window", self.round_stop_window, "must be >= 2",
                 "use e.g. --round-stop-window 3")
        _require(0 < self.round_stop_threshold < 1, "round_stop_threshold", self.round_stop_threshold,
                 "must be in (0, 1)", "use e.g. --round-stop-threshold 0.05")
        _require(0 < self.et_threshold, "et_threshold", self.et_threshold, "must be > 0", "the paper uses 0.6")
        _require(self.et_warmup_epochs >= 1, "et_warmup_epochs", self.et_warmup_epochs, "must be >= 1", "use 2")
        _require(self.et_batch >= 1, "et_batch", self.et_batch, "must be >= 1", "use 1000")
        _require(self.search_epochs is None or self.search_epochs >= 1, "search_epochs", self.search_epochs,
                 "must be >= 1", "drop it to search with --epochs")
        _require(self.search_schedule in (None, "cosine", "constant", "step", "linear"), "search_schedule",
                 self.search_schedule, "must be cosine, constant, step or linear", "drop it to use --schedule")
        _require(0 < self.gmp_end <= 1, "gmp_end", self.gmp_end, "must be in (0, 1]", "use e.g. --gmp-end 0.75")
        _require(self.gmp_every is None or self.gmp_every >= 1, "gmp_every", self.gmp_every, "must be >= 1",
                 "drop it to prune every quarter epoch")
        _require(self.lrr_jump >= 1, "lrr_jump", self.lrr_jump, "must be >= 1", "use e.g. --lrr-jump 5")
        _require(self.lrr_epochs >= 1, "lrr_epochs", self.lrr_epochs, "must be >= 1", "use e.g. --lrr-epochs 1")
        for name in ("t_pre", "t_post"):
            _require(getattr(self, name) is None or getattr(self, name) >= 1, name, getattr(self, name),
                     "must be >= 1", "give a number of timesteps")
        _parse_early_time(self.early_time)
        for name in ("retrain_at", "reinit_levels"):
            items = getattr(self, name)
            _require(len(items) >= 1, name, items, "needs at least one level", "use last")
            for item in items:
                parse_retrain_at(item, flag_name(name))

    @property
    def early_time_mode(self) -> str | int:
        """``"off"``, ``"auto"`` or the forced number of search timesteps."""
        return _parse_early_time(self.early_time)


@dataclass(frozen=True)
class SearchRunConfig:
    """Everything ``snnlth search`` needs: ``[data]``, ``[model]``, ``[train]`` and ``[search]`` tables (the
    recipe) and ``[runtime]``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def search_differs(self) -> bool:
        """The search runs train otherwise than the final tickets (``--search-epochs``, ``--search-schedule``)."""
        s = self.search
        return (s.search_epochs not in (None, self.train.epochs)
                or s.search_schedule not in (None, self.train.schedule))

    def __post_init__(self) -> None:
        s, epochs, t = self.search, self.train.epochs, self.model.timesteps
        _require(s.rewind_epoch < epochs, "rewind_epoch", s.rewind_epoch, f"must be < --epochs ({epochs})",
                 "rewind to an epoch before the end of training")
        mode = s.early_time_mode
        if isinstance(mode, int):
            _require(1 <= mode < t, "early_time", mode, f"must be in [1, --timesteps) = [1, {t})",
                     "choose fewer search timesteps than the final model uses, or --early-time auto")
        if mode == "auto":
            _require(t >= 3, "timesteps", t, "must be >= 3 for --early-time auto (candidates are 2..T-1)",
                     "use --early-time off or more timesteps")
            _require(s.et_warmup_epochs < epochs, "et_warmup_epochs", s.et_warmup_epochs,
                     f"must be < --epochs ({epochs})", "warm up for fewer epochs than the dense round")

