"""Command line: ``snnlth train ...``. The only module that prints."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable

from snnlth import __version__
from snnlth.config import TrainRunConfig
from snnlth.config_io import config_to_toml, overrides_from_namespace, resolve_config
from snnlth.errors import ConfigError, SnnlthError
from snnlth.progress import Progress
from snnlth.run_flags import FlagParser, add_run_args, add_search_args, search_config
from snnlth.rundir.layout import RunLayout


def _cmd_train(args: argparse.Namespace) -> int:
    from snnlth.api import train

    cfg = resolve_config(TrainRunConfig, args.config, overrides_from_namespace(args))
    progress = Progress(enabled=not args.no_progress)
    try:
        result = train(cfg, out=args.out, runs_root=args.runs_root, on_batch=progress.on_batch,
                       on_epoch=progress.on_epoch)
    finally:
        progress.close()
    s = result.summary
    if result.status == "done":
        print(f"{result.run_dir} already holds this finished run; delete it to train again")
    print(f"test accuracy {s['test_accuracy']:.2f}% (best {s['best_test_accuracy']:.2f}%) after {s['epochs']} "
          f"epochs, T={s['timesteps']}, {s['train_seconds']:.1f}s training")
    print(f"summary: {RunLayout(result.run_dir).summary}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from snnlth.api import search
    from snnlth.methods.phases import Callbacks
    from snnlth.parallel import from_env

    cfg = search_config(args)
    if args.print_config:
        print(config_to_toml(cfg), end="")
        return 0
    main = from_env().is_main  # under torchrun only rank 0 shows progress and results
    progress = Progress(enabled=not args.no_progress and main)
    try:
        result = search(cfg, out=args.resume or args.out, runs_root=args.runs_root,
                        callbacks=Callbacks(progress.on_batch, progress.on_epoch, progress.on_event))
    finally:
        progress.close()
    if not main:
        return 0
    s = result.summary
    if result.status == "done":
        print(f"{result.run_dir} already holds this finished search; delete it to search again")
    et = s["early_time"]
    print(f"\n{s['method']}{' + Early-Time (T_early=' + str(et['t_early']) + ')' if et else ''}, {s['model']} on "
          f"{s['dataset']}, T={s['timesteps']}, seed {s['seed']}")
    head = ("round", "sparsity", "all params", "T", "test acc", "best", "search s")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (5, 9, 10, 3, 9, 7, 9))) + "  final")
    for lv in s["levels"]:
        acc = "-" if lv["test_accuracy"] is None else f"{lv['test_accuracy']:.2f}"
        best = "-" if lv["best_test_accuracy"] is None else f"{lv['best_test_accuracy']:.2f}"
        rnd = "-" if lv["round"] is None else lv["round"]
        spent = "-" if lv["search_seconds"] is None else f"{lv['search_seconds']:.1f}"
        print(f"{rnd:>5} {lv['sparsity_prunable']:>9.2%} {lv['sparsity_all']:>10.2%} {lv['timesteps']:>3} "
              f"{acc:>9} {best:>7} {spent:>9}  {'yes' if lv['final'] else 'no'}")
    if s["search_seconds_total"] is None:  # reinit: the masks of another run, no search of its own
        print(f"no search of its own (masks of {s['from_run']}), evaluation {s['eval_seconds']:.1f}s, "
              f"total {s['total_seconds']:.1f}s")
    elif "search_wall_seconds" in s:
        print(f"search {s['search_seconds_total']:.1f}s of training ({s['search_wall_seconds']:.1f}s wall clock), "
              f"retraining {s['retrain_seconds_total']:.1f}s, evaluation {s['eval_seconds']:.1f}s, "
              f"total {s['total_seconds']:.1f}s")
    else:  # a run finished before 0.2: its search time counted evaluation too
        print(f"search {s['search_seconds_total']:.1f}s (evaluation included: written before 0.2), "
              f"total {s['total_seconds']:.1f}s")
    print(f"summary: {RunLayout(result.run_dir).summary}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from snnlth.report.collect import load_runs
    from snnlth.report.render import write_report
    from snnlth.report.tables import table1, to_text

    runs = load_runs(args.runs)
    paths = write_report(runs, args.out)
    for r in runs:
        if r.missing:
            print(f"note: {r.path} is missing {', '.join(r.missing)}; reported what is there")
    print(to_text(table1(runs), max_rows=10))
    print(f"\nreport: {paths['report.html']} (also {paths['report.md']} and {len(paths) - 2} figures)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from snnlth.cluster import ClusterOptions
    from snnlth.sweep import load_grid, sweep

    grid = load_grid(args.grid, seeds=args.seeds, methods=args.methods, presets=args.presets,
                     overrides=args.overrides, flags=args.flags, config=args.config, runs_root=args.runs_root,
                     workers=args.workers, report_dir=args.report_dir)
    cluster = ClusterOptions(executor=args.executor, partition=args.slurm_partition, time_min=args.slurm_time,
                             gpus_per_job=args.slurm_gpus_per_job, cpus_per_job=args.slurm_cpus_per_job,
                             array_parallelism=args.slurm_array_parallelism, options=tuple(args.slurm_options or ()))
    return sweep(grid, print_commands=args.print_commands, cluster=cluster, status=args.status)


def _cmd_presets(args: argparse.Namespace) -> int:
    from snnlth.presets import describe, names

    rows = names()
    width = max(len(n) for n in rows)
    for name in rows:
        print(f"{name:<{width}}  {describe(name)}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from snnlth.methods.registry import describe_methods

    rows = describe_methods()
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    return 0


def _export_nir(args: argparse.Namespace) -> int:
    from snnlth.nir_export import run_ticket, to_nir, write_graph

    ticket, level = run_ticket(args.run, args.round, args.sparsity)
    graph = to_nir(ticket, dt=args.dt, timesteps=args.timesteps)
    write_graph(graph, args.out)
    print(f"NIR graph of the {100 * level['sparsity_prunable']:.2f} %-sparse ticket ({len(graph.nodes)} nodes, dt "
          f"{args.dt}, T={args.timesteps or level['timesteps']} in its metadata): {args.out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from snnlth.engine.energy import E_AC_PJ, E_MAC_PJ
    from snnlth.export import export_ticket

    if args.round is not None and args.sparsity is not None:
        raise ConfigError("give --round or --sparsity, not both")
    if args.format == "nir":
        return _export_nir(args)
    info = export_ticket(args.run, args.out, args.round, args.sparsity, half=args.fp16)
    lv, size, dense = info["level"], info["file_bytes"], info["dense_bytes"]
    where = f"round {lv['round']}" if lv["round"] is not None else "Early-Bird ticket"
    print(f"{where}: {100 * lv['sparsity_prunable']:.2f} % of prunable weights pruned "
          f"({100 * lv['sparsity_all']:.2f} % of all), test accuracy {lv['test_accuracy']:.2f} % "
          f"at T={lv['timesteps']}")
    print(f"wrote {args.out}: {size / 1024:.1f} KiB vs {dense / 1024:.1f} KiB dense fp32 state dict "
          f"({dense / size:.1f}x smaller; mask bits + {'fp16' if args.fp16 else 'fp32'} survivors)")
    if lv.get("synops_per_image") is not None:
        exact = lv.get("energy_model") == "neurobench-effective-ops"
        what = "effective ACs + {:.3f} M effective MACs (NeuroBench 2.3's count)" if exact else \
            "SynOps (AC) + {:.3f} M MACs (non-spiking input; uniform-activity estimate)"
        print(f"per test image: {lv['synops_per_image'] / 1e6:.3f} M {what.format(lv['macs_per_image'] / 1e6)} ~ "
              f"{lv['energy_uj_per_image']:.3f} uJ at {E_AC_PJ} pJ/AC, {E_MAC_PJ} pJ/MAC (45 nm, Horowitz ISSCC 2014)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = FlagParser(prog="snnlth", description="Lottery tickets in deep spiking neural networks.")
    parser.add_argument("--version", action="version", version=f"snnlth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train one (dense) model and evaluate it after every epoch",
                       description="Train one model; rerunning the same command resumes it.")
    add_run_args(p, TrainRunConfig, "train", "[data], [model], [train], [runtime]")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("search", help="find a lottery ticket with one of `snnlth methods` (+ --early-time, "
                       "--round-stop mask)",
                       description="Ticket search. Rerunning the same command (or --resume DIR) resumes it.")
    add_search_args(p)
    p.set_defaults(func=_cmd_search)

    _add_sweep_parser(sub)

    p = sub.add_parser("presets", help="list the paper's settings (the values of --preset)",
                       description="The paper's settings `snnlth search --preset NAME` starts from.")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("methods", help="list the registered ticket-search methods (the values of --method)",
                       description="The ticket-search methods `snnlth search --method` accepts.")
    p.set_defaults(func=_cmd_methods)

    p = sub.add_parser("report", help="tables and plots over search runs (methods, seeds) of one model",
                       description="Write REPORT_DIR/report.md, a self-contained report.html and PNG figures.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="search run directories, or parents holding them")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="directory for the report files")
    p.set_defaults(func=_cmd_report)

    _add_export_parser(sub)
    return parser


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run seeds x methods x presets x overrides as a queue over GPUs or CPU workers",
                       description="A queue of independent searches: finished runs are skipped, started ones "
                       "resume, a crashed run is retried once; one report per model and dataset at the end.")
    p.add_argument("grid", nargs="?", metavar="GRID.toml", help="a file with a [sweep] table (keys: the flags "
                   "below, with _ for -); flags override it")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0)")
    p.add_argument("--methods", nargs="+", help="--method values (default: the config's or preset's own)")
    p.add_argument("--presets", nargs="+", help="--preset values (default none)")
    p.add_argument("--override", dest="overrides", action="append", metavar="FLAGS",
                   help="one variant: extra `snnlth search` flags in one string ('' for none); repeat for more")
    p.add_argument("--flags", metavar="FLAGS", help="`snnlth search` flags for every run, in one string")
    p.add_argument("--config", metavar="FILE.toml", help="search config every run starts from")
    p.add_argument("--runs-root", metavar="DIR", help="parent of the run directories (default runs)")
    p.add_argument("--workers", type=int, help="runs at a time (default: one per GPU, else 1)")
    p.add_argument("--report-dir", metavar="DIR", help="where the reports go (default <runs-root>/reports)")
    p.add_argument("--print-commands", action="store_true",
                   help="print the unfinished runs as `snnlth search` commands (for a cluster scheduler) and exit")
    p.add_argument("--status", action="store_true", help="print each run's state (pending, running, finished, "
                   "failed with its log's last line) and exit")
    p.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local",
                   help="local: a queue of processes here (default); slurm: one SLURM job per run (needs "
                   "snnlth[cluster]); submitit-local: the same jobs as local processes through submitit")
    p.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition of the jobs")
    p.add_argument("--slurm-time", type=int, default=60, metavar="MIN",
                   help="time limit of a job in minutes (default 60); a job reaching it is requeued and resumes")
    p.add_argument("--slurm-gpus-per-job", type=int, default=0, metavar="G",
                   help="GPUs per job (default 0); G > 1 runs the search under torchrun on G processes")
    p.add_argument("--slurm-cpus-per-job", type=int, metavar="N", help="CPUs per job")
    p.add_argument("--slurm-array-parallelism", type=int, metavar="N", help="jobs running at once")
    p.add_argument("--slurm-option", dest="slurm_options", action="append", metavar="KEY=VALUE",
                   help="any other sbatch option (account=proj, mem=32G, qos=high); repeat for more")
    p.set_defaults(func=_cmd_sweep)


def _add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="write one ticket as a safetensors file (mask bits + surviving values)",
                       description="Export a ticket of a finished search; default: its sparsest final level.")
    p.add_argument("run", metavar="RUN_DIR", help="a finished search run directory")
    p.add_argument("--round", type=int, metavar="K", help="the round (level) to export")
    p.add_argument("--sparsity", type=float, metavar="S",
                   help="the level nearest this prunable sparsity (within 0.005)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (.safetensors, or .nir)")
    p.add_argument("--fp16", action="store_true", help="store surviving values as fp16 (default fp32)")
    p.add_argument("--format", choices=("safetensors", "nir"), default="safetensors",
                   help="safetensors (mask bits + surviving values) or nir (a NIR graph, HDF5: docs/nir.md)")
    p.add_argument("--dt", type=float, default=1e-4, help="nir: the time step the graph's time constants assume")
    p.add_argument("--timesteps", type=int, metavar="T", help="nir: the T written into the metadata (default the "
                   "ticket's)")
    p.set_defaults(func=_cmd_export)


def torch_oom() -> type[BaseException]:
    """torch's CUDA out-of-memory error (a class that never matches when torch lacks it)."""
    import torch

    return getattr(torch.cuda, "OutOfMemoryError", _Never)


class _Never(Exception):
    pass


def _run_dir_warning() -> type[Warning]:
    from snnlth.rundir.store import RunDirWarning

    return RunDirWarning


def _one_line_warnings(show: Callable) -> Callable:
    """``warnings.showwarning`` that prints snnlth's run-directory warnings as one line, others as ``show`` does."""
    ours = _run_dir_warning()

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, ours):
            print(f"snnlth: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code = _run(args)
    if from_env_active():
        # a rank of a torchrun leaves without the interpreter's shutdown, where torch's threads, destroyed while
        # still joinable, abort it under load ("terminate called without an active exception", SIGABRT): every
        # file is already written and fsynced, only the standard streams need flushing
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def from_env_active() -> bool:
    from snnlth.parallel import from_env

    try:
        return from_env().active
    except SnnlthError:
        return False


def _run(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            warnings.simplefilter("always", _run_dir_warning())
            return args.func(args)
    except SnnlthError as exc:
        print(f"snnlth: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return _interrupted()
    except torch_oom() as exc:
        print(f"snnlth: error: the GPU ran out of memory ({str(exc).splitlines()[0][:120]}); use a smaller "
              "--batch-size or --amp, then rerun the same command to resume", file=sys.stderr)
        return 1
    except Exception as exc:
        if _raised_by_an_interrupt(exc):  # Ctrl-C inside a library's clean-up (a progress bar's lock) can surface
            return _interrupted()  # as another error; the interrupt is still what happened
        raise


def _interrupted() -> int:
    print("snnlth: interrupted (files being written were completed); rerun the same command to resume from the "
          "last completed epoch", file=sys.stderr)
    return 130


def _raised_by_an_interrupt(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
