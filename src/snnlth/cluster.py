"""``snnlth sweep --executor slurm|submitit-local``: each run of a sweep as one submitit job.

A job runs the run's ``snnlth search`` command (under ``torch.distributed.run`` when it asks for several GPUs), its
output appended to ``<run dir>.sweep.log`` as on the local path. A job that is preempted or reaches its time limit
gets submitit's signal: :meth:`SearchTask.checkpoint` stops the search and hands back the same task, which submitit
requeues; rerunning the same command resumes the run from its directory. A job whose search exits non-zero is
resubmitted up to ``attempts`` times in all (bad input, exit status 2, never). Each run keeps a record,
``<run dir>.job.json`` (state, submitit job id, attempt, exit status), written atomically, which ``--status`` reads.
``submitit-local`` runs the same jobs through submitit's LocalExecutor (what the tests use).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snnlth.errors import ConfigError
from snnlth.rundir.atomic import atomic_write_json, read_json

EXECUTORS = ("local", "slurm", "submitit-local")
NOT_RETRIED = (0, 2, 130)  # done, bad input (a retry cannot help), interrupted by the user


def parse_option(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--slurm-option`` as (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--slurm-option {text!r} is not KEY=VALUE; write e.g. --slurm-option account=myproject")
    return key.strip(), value


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the jobs of a sweep run: ``executor`` (local: today's process queue), SLURM partition, time
    limit in minutes, GPUs and CPUs per job, jobs running at once, extra ``KEY=VALUE`` options and attempts per run
    (a run whose search exits non-zero is resubmitted until then; preemptions and time-outs do not count)."""

    executor: str = "local"
    partition: str | None = None
    time_min: int = 60
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    array_parallelism: int | None = None
    options: tuple[str, ...] = ()
    attempts: int = 2

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"sweep: unknown executor {self.executor!r}; choose one of {', '.join(EXECUTORS)}")
        for name in ("time_min", "cpus_per_job", "array_parallelism", "attempts"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"sweep: {name} must be >= 1 (got {value})")
        if self.gpus_per_job < 0:
            raise ConfigError(f"sweep: gpus_per_job must be >= 0 (got {self.gpus_per_job})")
        for text in self.options:
            parse_option(text)


def search_command(argv: tuple[str, ...] | list[str], gpus: int = 0) -> list[str]:
    """The ``snnlth search`` command of a run; under ``torch.distributed.run`` (one process per GPU) for gpus > 1."""
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
                "-m", "snnlth", "search", *argv]
    return [sys.executable, "-m", "snnlth", "search", *argv]


def log_path(run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}.sweep.log"


def record_path(run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}.job.json"


def read_record(run_dir: Path) -> dict[str, Any]:
    path = record_path(run_dir)
    try:
        return dict(read_json(path)) if path.exists() else {}
    except Exception:  # a record is a hint for --status; an unreadable one counts as none
        return {}


def update_record(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into the run's job record (atomic write)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record_path(run_dir), {**read_record(run_dir), **fields, "updated": time.time()})


class SearchTask:
    """One run as a submitit job: calling it runs the search and returns its exit status. Picklable (the child
    process is left out), and checkpointable: on preemption or time-out it stops the search and is requeued."""

    def __init__(self, argv: tuple[str, ...], run_dir: Path, gpus: int = 0, env: dict[str, str] | None = None):
        self.argv, self.run_dir, self.gpus, self.env = tuple(argv), Path(run_dir), gpus, dict(env or {})
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> int:
        update_record(self.run_dir, state="running", pid=os.getpid())
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with log_path(self.run_dir).open("a") as fh:
            self._proc = subprocess.Popen(search_command(self.argv, self.gpus), env=env, stdout=fh,
                                          stderr=subprocess.STDOUT)
            # poll, not wait(): submitit's preemption handler (checkpoint -> stop) runs in this thread and must be
            # able to wait for the child itself, which a wait() it interrupted would block (it holds the lock)
            while (code := self._proc.poll()) is None:
                time.sleep(0.2)
        update_record(self.run_dir, state="finished" if code == 0 else "failed", returncode=code)
        return code

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop the running search: Ctrl-C first (it finishes the file it is writing), then SIGKILL."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue protocol: stop the search, return the same task; rerun, it resumes from the run dir."""
        from submitit.helpers import DelayedSubmission

        self.stop()
        update_record(self.run_dir, state="requeued", requeues=read_record(self.run_dir).get("requeues", 0) + 1)
        return DelayedSubmission(SearchTask(self.argv, self.run_dir, self.gpus, self.env))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_proc": None}


def _import_submitit(executor: str) -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"sweep --executor {executor} needs submitit: pip install 'snnlth[cluster]'") from None
    return submitit


def executor_parameters(opts: ClusterOptions) -> dict[str, Any]:
    """submitit's ``update_parameters`` of ``opts``: time, GPUs, and for SLURM the partition, CPUs, array
    parallelism and each ``--slurm-option`` (as its ``slurm_*`` parameter where submitit has one, else passed to
    sbatch through ``slurm_additional_parameters``)."""
    params: dict[str, Any] = {"timeout_min": opts.time_min, "gpus_per_node": opts.gpus_per_job, "tasks_per_node": 1}
    if opts.executor != "slurm":
        return params
    known = _import_submitit(opts.executor).SlurmExecutor._valid_parameters()
    extra: dict[str, str] = {}
    for key, value in map(parse_option, opts.options):
        if key.replace("-", "_") in known:
            params[f"slurm_{key.replace('-', '_')}"] = value
        else:
            extra[key] = value
    params.update({k: v for k, v in (("slurm_partition", opts.partition), ("cpus_per_task", opts.cpus_per_job),
                                      ("slurm_array_parallelism", opts.array_parallelism)) if v is not None})
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def make_executor(opts: ClusterOptions, folder: Path) -> Any:
    """submitit's executor for ``opts`` (SLURM, or the LocalExecutor for submitit-local); its own logs (one
    ``<job id>_0_log.out/.err`` per job) go to ``folder``."""
    submitit = _import_submitit(opts.executor)
    executor = submitit.AutoExecutor(folder=folder, cluster="local" if opts.executor == "submitit-local" else "slurm")
    executor.update_parameters(**executor_parameters(opts))
    return executor


def _submit(executor: Any, job: Any, opts: ClusterOptions, attempt: int, env: dict[str, str] | None) -> Any:
    update_record(job.run_dir, state="pending", attempt=attempt, title=job.title, argv=list(job.argv),
                  executor=opts.executor, job_id=None)
    handle = executor.submit(SearchTask(job.argv, job.run_dir, opts.gpus_per_job, env))
    update_record(job.run_dir, job_id=str(handle.job_id))
    return handle


def _exit_status(handle: Any) -> int | None:
    try:
        return int(handle.result())
    except Exception:  # the job itself failed (timed out too often, node failure): no exit status
        return None


def run_cluster(jobs: list[Any], opts: ClusterOptions, folder: Path, log: Callable[[str], None] = print,
                env: dict[str, str] | None = None) -> list[tuple[Any, str, int, int | None, Path]]:
    """Submit every job (a :class:`snnlth.sweep.Job`), wait for all, resubmitting a run whose search failed (up to
    ``opts.attempts`` in all; exit status 2 never). Returns (job, "finished" | "failed", attempts, exit status,
    log) for each."""
    executor = make_executor(opts, folder)
    queue = [(job, 1, _submit(executor, job, opts, 1, env)) for job in jobs]
    for job, _, handle in queue:
        log(f"submitted {job.title} (job {handle.job_id})")
    results = []
    while queue:
        job, attempt, handle = queue.pop(0)
        code = _exit_status(handle)
        if code == 0:
            log(f"done    {job.title}: {job.run_dir}")
            results.append((job, "finished", attempt, code, log_path(job.run_dir)))
            continue
        if code not in NOT_RETRIED and attempt < opts.attempts:
            log(f"crashed {job.title} (exit {code}); retrying")
            queue.append((job, attempt + 1, _submit(executor, job, opts, attempt + 1, env)))
            continue
        update_record(job.run_dir, state="failed", returncode=code)
        log(f"FAILED  {job.title}: exit {code}, see {log_path(job.run_dir)}")
        results.append((job, "failed", attempt, code, log_path(job.run_dir)))
    return results


def last_line(path: Path) -> str:
    """The last non-empty line of a log ("" when there is none)."""
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def run_state(run_dir: Path, finished: bool) -> tuple[str, str]:
    """(pending | running | finished | failed, detail) of a run, from its directory and its job record; the
    detail of a failed run is the last line of its log."""
    if finished:
        return "finished", ""
    record = read_record(run_dir)
    state = record.get("state", "pending")
    job = f"job {record['job_id']}" if record.get("job_id") else ""
    if state == "failed":
        return "failed", f"exit {record.get('returncode')}: {last_line(log_path(run_dir))}"
    if state in ("running", "requeued"):
        return "running", job
    return "pending", job
