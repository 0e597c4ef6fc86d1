"""``snnlth sweep``: a queue of independent searches (seeds × methods × presets × overrides) over the available
devices, one ``snnlth search`` process per run: one run per GPU, or N CPU workers sharing the cores.

Run directories are named by content, so a finished run is skipped and a started one resumes. A run whose process
dies is retried once (it resumes), then reported failed; bad input (exit status 2) is not retried. At the end, one
``snnlth report`` per model and dataset. ``--print-commands`` prints the queue for a cluster scheduler instead.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnlth.cluster import NOT_RETRIED, ClusterOptions, run_cluster, run_state
from snnlth.config_io import load_toml
from snnlth.errors import ConfigError
from snnlth.registry import unknown_name_message


@dataclass(frozen=True)
class Grid:
    """What a sweep runs: every combination of ``seeds`` × ``methods`` × ``presets`` × ``overrides`` (each override
    a string of extra ``snnlth search`` flags, "" for none), on top of ``config`` and ``flags``. A method or preset
    of "" adds no flag: the run keeps the config's (or the preset's) own method."""

    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = ("",)
    presets: tuple[str, ...] = ("",)
    overrides: tuple[str, ...] = ("",)
    flags: str = ""
    config: str | None = None
    runs_root: str = "runs"
    workers: int | None = None
    report_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("seeds", "methods", "presets", "overrides"):
            if not getattr(self, name):
                raise ConfigError(f"sweep: {name} is empty; give at least one value (or leave it out)")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"sweep: workers must be >= 1 (got {self.workers})")


def load_grid(path: str | Path | None, **flags: Any) -> Grid:
    """The ``[sweep]`` table of a TOML file (keys: the fields of :class:`Grid`), then ``flags`` (None: not given)."""
    values: dict[str, Any] = {}
    if path is not None:
        table = load_toml(path)
        unknown = sorted(set(table) - {"sweep"})
        if unknown or "sweep" not in table:
            raise ConfigError(f"{path}: a sweep file holds one [sweep] table (found {', '.join(unknown) or 'none'})")
        values = dict(table["sweep"])
    known = [f.name for f in dataclasses.fields(Grid)]
    for key in values:
        if key not in known:
            raise ConfigError(f"{path}: " + unknown_name_message("[sweep] key", key, known))
    values.update({k: v for k, v in flags.items() if v is not None})
    for key in ("seeds", "methods", "presets", "overrides"):
        if key in values:
            if isinstance(values[key], (str, int)):
                values[key] = [values[key]]
            values[key] = tuple(values[key])
    if isinstance(values.get("flags"), list):
        values["flags"] = shlex.join(values["flags"])
    try:
        return Grid(**values)
    except TypeError as exc:
        raise ConfigError(f"sweep: {exc}") from None


@dataclass(frozen=True)
class Job:
    """One search of the sweep: its ``snnlth search`` arguments and the run directory they name."""

    argv: tuple[str, ...]
    run_dir: Path
    title: str

    def command(self) -> list[str]:
        return [sys.executable, "-m", "snnlth", "search", *self.argv]


def make_jobs(grid: Grid) -> list[Job]:
    """Every run of the grid (seeds innermost, so a seed's methods run side by side), each config resolved and
    checked the way ``snnlth search`` does, so a bad value stops the sweep before anything runs."""
    from snnlth.api import search_run_dir
    from snnlth.methods.registry import method_of
    from snnlth.run_flags import search_config_of_flags

    jobs = []
    for preset in grid.presets:
        for override in grid.overrides:
            for method in grid.methods:
                for seed in grid.seeds:
                    argv = [*(["--config", grid.config] if grid.config else []),
                            *(["--preset", preset] if preset else []), *(["--method", method] if method else []),
                            "--seed", str(seed),
                            *shlex.split(grid.flags), *shlex.split(override), "--runs-root", grid.runs_root,
                            "--no-progress"]
                    cfg, _ = search_config_of_flags(argv)
                    method_of(cfg).validate(cfg)
                    title = " ".join(x for x in (preset, method or cfg.search.method, override.strip(), f"seed {seed}")
                                     if x)
                    jobs.append(Job(tuple(argv), search_run_dir(cfg, grid.runs_root), title))
    return jobs


def is_finished(run_dir: Path) -> bool:
    from snnlth.rundir.layout import RunLayout

    return RunLayout(run_dir).is_finished()


@dataclass
class Outcome:
    job: Job
    status: str  # "done before", "finished", "failed"
    attempts: int = 0
    returncode: int | None = None
    log: Path | None = None


def default_workers(device: str = "auto") -> tuple[int, list[str | None]]:
    """(workers, the CUDA_VISIBLE_DEVICES of each): one per visible GPU, else one on the CPU."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        n = torch.cuda.device_count()
        return n, [str(i) for i in range(n)]
    return 1, [None]


def run_queue(jobs: list[Job], workers: int, gpus: list[str | None], log: Callable[[str], None] = print,
              env: dict[str, str] | None = None) -> list[Outcome]:
    """Run the unfinished jobs, ``workers`` at a time; worker i uses GPU ``gpus[i]`` (None: the CPU, with its share
    of the cores). Each run's output goes to ``<run_dir>.sweep.log``."""
    outcomes = [Outcome(j, "done before") for j in jobs if is_finished(j.run_dir)]
    todo = [j for j in jobs if not is_finished(j.run_dir)]
    free = list(range(workers))
    lock = threading.Lock()
    threads = max(1, (os.cpu_count() or 1) // workers)

    def work(job: Job) -> Outcome:
        with lock:
            slot = free.pop()
        try:
            gpu = gpus[slot % len(gpus)]
            child = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
            if gpu is not None:
                child["CUDA_VISIBLE_DEVICES"] = gpu
            else:
                child["OMP_NUM_THREADS"] = str(threads)
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            log_path = job.run_dir.parent / f"{job.run_dir.name}.sweep.log"
            out = Outcome(job, "failed", log=log_path)
            for attempt in (1, 2):
                log(f"start   {job.title} (worker {slot}{', GPU ' + gpu if gpu else ''}, attempt {attempt})")
                with log_path.open("a") as fh:
                    proc = subprocess.run(job.command(), env=child, stdout=fh, stderr=subprocess.STDOUT)
                out.attempts, out.returncode = attempt, proc.returncode
                if proc.returncode == 0:
                    out.status = "finished"
                    log(f"done    {job.title}: {job.run_dir}")
                    return out
                if proc.returncode in NOT_RETRIED:
                    break
                log(f"crashed {job.title} (exit {proc.returncode}); {'retrying' if attempt == 1 else 'giving up'}")
            log(f"FAILED  {job.title}: exit {out.returncode}, see {log_path}")
            return out
        finally:
            with lock:
                free.append(slot)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes += list(pool.map(work, todo))
    return outcomes


def write_reports(run_dirs: list[Path], report_root: Path) -> list[Path]:
    """One ``snnlth report`` per model and dataset of the finished runs: ``<report_root>/<model>-<dataset>``."""
    from snnlth.report.collect import load_runs
    from snnlth.report.render import write_report

    groups: dict[tuple[str, str], list[Path]] = {}
    for d in run_dirs:
        runs = load_runs([d])
        groups.setdefault((runs[0].model, runs[0].dataset), []).append(d)
    out = []
    for (model, dataset), dirs in sorted(groups.items()):
        target = report_root / f"{model}-{dataset}".replace(":", "-").replace("/", "-")
        write_report(load_runs(dirs), target)
        out.append(target)
    return out


def status_lines(jobs: list[Job]) -> list[str]:
    """One line per run: its state (pending, running, finished, failed with its log's last line) and run dir."""
    lines = []
    for job in jobs:
        state, detail = run_state(job.run_dir, is_finished(job.run_dir))
        lines.append(f"{state:<9} {job.title}: {job.run_dir}" + (f" ({detail})" if detail else ""))
    return lines


def _run(jobs: list[Job], grid: Grid, cluster: ClusterOptions, log: Callable[[str], None],
         env: dict[str, str] | None) -> list[Outcome]:
    """Run the unfinished jobs on the chosen executor: today's process queue, or one submitit job per run."""
    todo = [j for j in jobs if not is_finished(j.run_dir)]
    before = [Outcome(j, "done before") for j in jobs if is_finished(j.run_dir)]
    if cluster.executor == "local":
        workers, gpus = default_workers()
        workers = grid.workers or workers
        log(f"sweep: {len(jobs)} runs, {len(before)} finished before, {len(todo)} to run on {workers} worker(s)")
        return run_queue(jobs, workers, gpus, log, env)
    log(f"sweep: {len(jobs)} runs, {len(before)} finished before, {len(todo)} to run as {cluster.executor} jobs")
    folder = Path(grid.runs_root) / "sweep_jobs"
    return before + [Outcome(*r) for r in run_cluster(todo, cluster, folder, log, env)] if todo else before


def sweep(grid: Grid, print_commands: bool = False, log: Callable[[str], None] = print,
          env: dict[str, str] | None = None, cluster: ClusterOptions | None = None, status: bool = False) -> int:
    """Run (or print, or show the state of) the grid; returns the exit status: 0 when every run finished, 1 when
    one failed."""
    jobs = make_jobs(grid)
    if print_commands:
        for job in jobs:
            if not is_finished(job.run_dir):
                log(shlex.join(["snnlth", "search", *job.argv]))
        return 0
    if status:
        for line in status_lines(jobs):
            log(line)
        return 0
    outcomes = _run(jobs, grid, cluster or ClusterOptions(), log, env)
    done = [o.job.run_dir for o in outcomes if o.status != "failed"]
    failed = [o for o in outcomes if o.status == "failed"]
    reports = write_reports(done, Path(grid.report_dir or Path(grid.runs_root) / "reports")) if done else []
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done before", "finished", "failed")}
    log(f"sweep: {counts['done before']} done before, {counts['finished']} finished, {counts['failed']} failed"
        + (f"; reports: {', '.join(str(r) for r in reports)}" if reports else ""))
    for o in failed:
        log(f"  failed: {o.job.title} (exit {o.returncode}; log {o.log})")
    return 1 if failed else 0
