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


def test_ablation_figures_average_only_series_that_differ_in_the_ablated_field(tmp_path):
    """IMP+ET at rewind 0 and IMP at lr 0.1 beside the rewind ablation: never averaged into its points."""
    from tests.report.fakes import write_run

    for seed in (0, 1):
        write_run(tmp_path / f"r0_{seed}", {"train": {"seed": seed}}, seed, [80.0 + seed, 78.0 + seed])
        write_run(tmp_path / f"r1_{seed}", {"search": {"rewind_epoch": 1}, "train": {"seed": seed}}, seed,
                  [80.0, 79.0 + 2 * seed])
    write_run(tmp_path / "et", {"search": {"early_time": "auto"}}, 0, [10.0, 10.0])
    write_run(tmp_path / "lr", {"train": {"lr": 0.1}}, 0, [20.0, 20.0])
    runs = load_runs([tmp_path])
    lines = accuracy_vs_rewind(runs).axes[0].get_lines()
    assert [(list(line.get_xdata()), list(line.get_ydata())) for line in lines] == [([0, 1], [80.5, 80.0]),
                                                                                   ([0, 1], [78.5, 80.0])]
    assert [line.get_label() for line in lines] == ["round 0 (0.0 % pruned)", "round 1 (25.0 % pruned)"]

    write_run(tmp_path / "lr_r1", {"search": {"rewind_epoch": 1}, "train": {"lr": 0.1}}, 0, [30.0, 30.0])
    lines = accuracy_vs_rewind(load_runs([tmp_path])).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["IMP (lr 0.05): round 0 (0.0 % pruned)",
                                                    "IMP (lr 0.05): round 1 (25.0 % pruned)",
                                                    "IMP (lr 0.1): round 0 (0.0 % pruned)",
                                                    "IMP (lr 0.1): round 1 (25.0 % pruned)"]
    assert list(lines[3].get_ydata()) == [20.0, 30.0]

    write_run(tmp_path / "local", {"search": {"scope": "local"}, "train": {"seed": 0}}, 0, [81.0, 70.0])
    scope = global_vs_local(load_runs([tmp_path / "r0_0", tmp_path / "local", tmp_path / "et"])).axes[0]
    assert [(line.get_label(), list(line.get_ydata())) for line in scope.get_lines()] == [
        ("global magnitude pruning", [80.0, 78.0]), ("local magnitude pruning", [81.0, 70.0])]
