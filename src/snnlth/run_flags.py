"""The flags of the commands that start a run (``snnlth train``, ``snnlth search``) and the configs they resolve
to, shared by the CLI and by ``snnlth sweep`` (which checks every run of a grid as ``snnlth search`` would before
anything runs). No printing here: a parser that cannot parse raises or exits with its one-line message."""

from __future__ import annotations

import argparse
import difflib
import shlex
from pathlib import Path

from snnlth.config import SearchRunConfig
from snnlth.config_io import (
    add_config_flags,
    config_from_dict,
    fill_legacy,
    overrides_from_namespace,
    resolve_search_config,
)
from snnlth.errors import ConfigError
from snnlth.rundir.layout import RunLayout

SECTIONS = ("data", "model", "train", "search", "runtime")


class FlagParser(argparse.ArgumentParser):
    """argparse with whole flag names only (``--timestep`` is not taken for ``--timesteps``: a typo must not start a
    run) and its errors as one line, with the closest flag when one is misspelt: exit status 2, or a
    :class:`ConfigError` with ``raising=True``."""

    def __init__(self, *args, raising: bool = False, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.raising = raising

    def _flags(self) -> list[str]:
        flags = list(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += list(sub._option_string_actions)
        return flags

    def error(self, message: str):  # type: ignore[override]
        hint = ""
        if message.startswith("unrecognized arguments:"):
            unknown = [a.split("=")[0] for a in message.split(":", 1)[1].split() if a.startswith("-")]
            close = difflib.get_close_matches(unknown[0], self._flags(), n=1, cutoff=0.75) if unknown else []
            hint = f" (did you mean {close[0]}?)" if close else ""
        if self.raising:
            raise ConfigError(f"{message}{hint}")
        self.exit(2, f"{self.prog}: error: {message}{hint}; see `{self.prog} --help`\n")


def add_run_args(p: argparse.ArgumentParser, cfg_cls: type, kind: str, tables: str) -> None:
    """Flags shared by the commands that create a run directory, then one flag per config field."""
    p.add_argument("--config", metavar="FILE.toml", help=f"TOML file with {tables} tables; flags override it")
    p.add_argument("--out", metavar="DIR", help=f"run directory (default: runs/{kind}-<model>-<dataset>-T<T>-<hash>/"
                   "seed_<seed>)")
    p.add_argument("--runs-root", default="runs", metavar="DIR", help="parent of default run directories")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (per-epoch lines only)")
    add_config_flags(p, cfg_cls)


def add_search_args(p: argparse.ArgumentParser) -> None:
    """The flags of ``snnlth search``."""
    add_run_args(p, SearchRunConfig, "<method>", "[data], [model], [train], [search], [runtime]")
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR with the config saved there")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")


def search_config(args: argparse.Namespace) -> SearchRunConfig:
    """The config parsed ``snnlth search`` flags mean: ``--config`` and the flags, or with ``--resume DIR`` the
    config saved in DIR with the flags over it."""
    overrides = overrides_from_namespace(args)
    if not args.resume:
        return resolve_search_config(args.config, overrides)
    run = RunLayout(Path(args.resume))
    if not run.config.exists():
        raise ConfigError(f"--resume {run.path}: no config.json there; give the run directory of a started search")
    saved = run.read_config()
    if saved.get("kind") != "search":
        raise ConfigError(f"--resume {run.path} holds a {saved.get('kind')} run; use `snnlth {saved.get('kind')}`")
    saved = fill_legacy(SearchRunConfig, {k: saved[k] for k in SECTIONS if k in saved})
    return config_from_dict(SearchRunConfig, overrides, config_from_dict(SearchRunConfig, saved))


def search_config_of_flags(argv: list[str]) -> tuple[SearchRunConfig, argparse.Namespace]:
    """The config and parsed namespace of ``snnlth search ARGV``; flags that do not parse are a
    :class:`ConfigError` naming them."""
    parser = FlagParser(prog="snnlth search", raising=True)
    add_search_args(parser)
    try:
        args = parser.parse_args(argv)
    except ConfigError as exc:
        raise ConfigError(f"these `snnlth search` flags do not parse ({exc}): {shlex.join(argv)}") from None
    return search_config(args), args
