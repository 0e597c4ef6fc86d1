"""The figures over the timesteps of inference: one line per final ticket, the mean over seeds of its levels'
``per_timestep`` rows; none for runs written before those rows."""

from pathlib import Path

import pytest

from snnlth.report.collect import RunRecord
from snnlth.report.timeplots import accuracy_vs_timesteps, effective_acs_vs_timesteps


def _run(seed: int, per_timestep: bool, final: bool = True) -> RunRecord:
    config = {"kind": "search", "model": {"model": "convnet", "timesteps": 3}, "data": {"dataset": "fmnist"},
              "train": {"seed": seed}, "search": {"method": "imp", "early_time": "off"}}
    levels = []
    for k, s in enumerate((0.0, 0.5)):
        lv = {"round": k, "sparsity_all": s, "sparsity_prunable": s, "test_accuracy": 80.0, "search_seconds": 1.0,
              "final": final, "timesteps": 3, "synops_per_image": 1e6, "macs_per_image": 1e5}
        if per_timestep:
            lv.update(energy_model="neurobench-effective-ops", effective_acs_per_image=3e6 + seed,
                      effective_macs_per_image=1e5,
                      per_timestep=[{"t": t, "accuracy": 70.0 + t + seed + k, "firing_rate": 0.1,
                                     "effective_acs": t * (1e6 + 2e6 * seed) * (1 - s), "effective_macs": 1e5}
                                    for t in (1, 2, 3)])
        levels.append(lv)
    return RunRecord(Path(f"/runs/imp{seed}"), config, {"levels": levels}, [])


def _lines(fig):
    return [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()]


def test_lines_are_the_mean_over_seeds_of_each_final_ticket():
    runs = [_run(0, True), _run(1, True)]
    acc = _lines(accuracy_vs_timesteps(runs))
    assert [label for label, _, _ in acc] == ["IMP, 0.0 % pruned", "IMP, 50.0 % pruned"]
    assert acc[0][1] == [1, 2, 3] and acc[0][2] == pytest.approx([71.5, 72.5, 73.5])  # seeds 0 and 1
    assert acc[1][2] == pytest.approx([72.5, 73.5, 74.5])
    acs = _lines(effective_acs_vs_timesteps(runs))
    assert acs[0][2] == pytest.approx([2.0, 4.0, 6.0]) and acs[1][2] == pytest.approx([1.0, 2.0, 3.0])  # millions


def test_no_figure_without_rows_per_timestep_or_final_tickets():
    assert accuracy_vs_timesteps([_run(0, False)]) is None and effective_acs_vs_timesteps([_run(0, False)]) is None
    assert accuracy_vs_timesteps([_run(0, True, final=False)]) is None
