"""The paper's ablation figures: drawn when the reported runs vary --rewind-epoch, --scope or use Early-Time."""

import pytest

from snnlth.api import search
from snnlth.report.collect import load_runs
from snnlth.report.plots import accuracy_vs_rewind, global_vs_local, t_early_vs_lambda
from snnlth.report.render import write_report
from tests.helpers import search_cfg


@pytest.mark.slow
def test_ablation_figures_appear_when_runs_vary_the_field(fmnist_dir, tmp_path):
    runs = {"r0": dict(), "r1": dict(rewind_epoch=1), "local": dict(scope="local"),
            "et": dict(early_time="auto", et_warmup_epochs=1, timesteps=4)}
    for name, extra in runs.items():
        search(search_cfg(fmnist_dir, **{"rounds": 2, **extra}), out=tmp_path / name)
    base = load_runs([tmp_path / "r0"])
    assert accuracy_vs_rewind(base) is None and global_vs_local(base) is None and t_early_vs_lambda(base) is None

    rewind = load_runs([tmp_path / "r0", tmp_path / "r1"])
    fig = accuracy_vs_rewind(rewind)
    lines = fig.axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[0, 1]] * 3  # rounds 0, 1, 2 at R = 0 and 1
    scope = global_vs_local(load_runs([tmp_path / "r0", tmp_path / "local"]))
    assert [line.get_label() for line in scope.axes[0].get_lines()] == ["global magnitude pruning",
                                                                       "local magnitude pruning"]
    et_run = load_runs([tmp_path / "et"])
    step, dot = t_early_vs_lambda(et_run).axes[0].get_lines()[:2]
    assert set(step.get_ydata()) <= {2, 3, 4}
    chosen = et_run[0].summary["early_time"]
    assert (list(dot.get_xdata()), list(dot.get_ydata())) == ([chosen["threshold"]], [chosen["t_early"]])
    grid = list(step.get_xdata())  # the curve at the run's own λ is the run's choice
    assert step.get_ydata()[grid.index(chosen["threshold"])] == chosen["t_early"]

    paths = write_report(load_runs([tmp_path]), tmp_path / "report")
    assert {"accuracy_vs_rewind.png", "global_vs_local.png", "t_early_vs_lambda.png"} <= set(paths)
