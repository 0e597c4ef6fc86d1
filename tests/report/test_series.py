"""Series: runs grouped by their identity without the seed, from the config.json files real searches write."""

import shutil

import pytest

from snnlth.cli import main
from snnlth.report.aggregate import comparisons, curves
from snnlth.report.collect import ReportError, load_runs
from snnlth.report.tables import run_table, table1
from tests.helpers import make_fmnist, one_line_error
from tests.report.fakes import write_run

TINY = ["--model", "lenet300", "--timesteps", "3", "--batch-size", "50", "--lr", "0.05", "--device", "cpu",
        "--rounds", "1", "--no-progress"]


@pytest.fixture(scope="module")
def rewind_runs(tmp_path_factory):
    """The rewinding ablation the README points to (docs/presets.md: ``for r in 0 1 2; do snnlth search ...
    --rewind-epoch $r --out runs/rewind/r$r; done; snnlth report runs/rewind``), shrunk, plus an IMP+ET run at rewind
    2 beside it."""
    root = tmp_path_factory.mktemp("ablation")
    data = make_fmnist(root / "data")
    common = [*TINY, "--data-dir", str(data), "--epochs", "3", "--train-subset", "200", "--test-subset", "100"]
    for r in (0, 1, 2):
        assert main(["search", *common, "--rewind-epoch", str(r), "--out", str(root / "rewind" / f"r{r}")]) == 0
    assert main(["search", *common, "--rewind-epoch", "2", "--early-time", "auto", "--et-warmup-epochs", "1",
                 "--et-batch", "50", "--out", str(root / "et" / "r2")]) == 0
    return root


def test_rewind_ablation_gives_one_series_per_rewind_epoch(rewind_runs, tmp_path):
    assert main(["report", str(rewind_runs / "rewind"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    table = md.split("Columns:")[0]  # the Table-1 layout, before its note
    assert "| IMP (rewind 2) | accuracy % |" in table and " ± " not in table
    runs = load_runs([rewind_runs / "rewind"])
    cs = curves(runs)
    assert list(cs) == ["IMP (rewind 0)", "IMP (rewind 1)", "IMP (rewind 2)"]
    assert all(p.n == 1 and p.accuracy_std == 0.0 for pts in cs.values() for p in pts)  # never averaged
    _, rows = table1(runs)
    assert not any("±" in cell for row in rows for cell in row)
    assert sorted(row[1] for row in run_table(runs)[1]) == list(cs)  # the method column names the series


def test_et_variant_is_compared_with_the_base_series_of_its_rewind(rewind_runs):
    runs = load_runs([rewind_runs / "rewind" / "r0", rewind_runs / "rewind" / "r2", rewind_runs / "et"])
    assert list(curves(runs)) == ["IMP (rewind 0)", "IMP (rewind 2)", "IMP+ET"]
    assert comparisons(runs) == {"IMP+ET": "IMP (rewind 2)"}
    _, rows = table1(runs)
    compared = {row[0] for row in rows if " vs " in row[0]}
    assert compared == {"IMP+ET vs IMP (rewind 2)"}


def test_duplicate_seed_in_a_series_is_refused(rewind_runs, tmp_path, capsys):
    copy = tmp_path / "copy_of_r0"
    shutil.copytree(rewind_runs / "rewind" / "r0", copy)
    original = rewind_runs / "rewind" / "r0"
    with pytest.raises(ReportError, match="pass one of them") as err:
        curves(load_runs([original, copy]))
    assert str(original) in str(err.value) and str(copy) in str(err.value) and "\n" not in str(err.value)
    assert main(["report", str(original), str(copy), "--out", str(tmp_path / "rep")]) == 2
    assert "same IMP run (seed 0)" in one_line_error(capsys)
    assert not (tmp_path / "rep" / "report.md").exists()


def test_sweep_over_two_overrides_and_two_seeds_gives_two_series_of_two_seeds(tmp_path):
    from snnlth.sweep import load_grid, make_jobs

    data = make_fmnist(tmp_path / "data")
    flags = " ".join([*TINY, "--data-dir", str(data), "--epochs", "2"])
    grid = load_grid(None, seeds=[0, 1], overrides=["--rewind-epoch 0", "--rewind-epoch 1"], flags=flags,
                     runs_root=str(tmp_path / "runs"))
    jobs = make_jobs(grid)
    assert len(jobs) == 4
    for job in jobs:
        assert main(["search", *job.argv]) == 0
    cs = curves(load_runs([tmp_path / "runs"]))
    assert list(cs) == ["IMP (rewind 0)", "IMP (rewind 1)"]
    assert all(p.n == 2 for pts in cs.values() for p in pts)


@pytest.mark.parametrize("sources_readable", [True, False])
def test_baselines_of_one_source_series_are_one_series(tmp_path, sources_readable):
    """reinit runs name their source run (one per seed) in search.from_run: runs --from the seeds of one IMP series
    are one series, runs --from another IMP series another."""
    for name, semantic in (("imp-r0", {}), ("imp-r2", {"search": {"rewind_epoch": 2}})):
        for seed in (0, 1):
            write_run(tmp_path / "src" / name / f"seed_{seed}", {**semantic, "train": {"seed": seed}}, seed, [80.0])
            source = tmp_path / "src" / name / f"seed_{seed}"
            semantic_reinit = {"search": {"method": "reinit", "from_run": str(source)}, "train": {"seed": seed}}
            write_run(tmp_path / "reinit" / name / f"seed_{seed}", semantic_reinit, seed, [70.0 + seed])
    if not sources_readable:
        shutil.rmtree(tmp_path / "src")
    cs = curves(load_runs([tmp_path / "reinit" / "imp-r0", tmp_path / "reinit" / "imp-r2"]))
    assert len(cs) == 2 and all(label.startswith("reinit (from ") for label in cs)
    assert [[(p.n, p.accuracy) for p in pts] for pts in cs.values()] == [[(2, 70.5)], [(2, 70.5)]]


def test_each_variant_is_compared_with_the_base_series_of_the_same_settings(tmp_path):
    for r, base_acc, et_acc in ((0, 80.0, 79.0), (2, 70.0, 72.0)):
        for seed in (0, 1):
            search = {"rewind_epoch": r} if r else {}
            write_run(tmp_path / f"imp_r{r}_{seed}", {"search": search, "train": {"seed": seed}}, seed,
                      [90.0, base_acc + seed])
            write_run(tmp_path / f"et_r{r}_{seed}", {"search": {**search, "early_time": "auto", "et_threshold": 0.5},
                                                     "train": {"seed": seed}}, seed, [90.0, et_acc + seed])
    runs = load_runs([tmp_path])
    assert comparisons(runs) == {"IMP+ET (rewind 0)": "IMP (rewind 0)", "IMP+ET (rewind 2)": "IMP (rewind 2)"}
    _, rows = table1(runs)
    delta = {row[0]: row[3] for row in rows if row[1] == "Δ accuracy"}
    assert delta == {"IMP+ET (rewind 0) vs IMP (rewind 0)": "-1.00", "IMP+ET (rewind 2) vs IMP (rewind 2)": "+2.00"}
    accuracy = {row[0]: row[3] for row in rows if row[1] == "accuracy %"}
    assert accuracy["IMP (rewind 2)"] == "70.50 ± 0.71"  # its 2 seeds, never the rewind-0 runs


def test_a_search_schedule_variant_is_compared_with_its_plain_method(rewind_runs, tmp_path):
    common = [*TINY, "--data-dir", str(make_fmnist(tmp_path / "data")), "--epochs", "3", "--train-subset", "200",
              "--test-subset", "100"]
    assert main(["search", *common, "--out", str(tmp_path / "ss" / "imp")]) == 0
    assert main(["search", *common, "--search-epochs", "2", "--search-schedule", "linear",
                 "--out", str(tmp_path / "ss" / "imp_ss")]) == 0
    runs = load_runs([tmp_path / "ss"])
    assert comparisons(runs) == {"IMP+SS": "IMP"}
    assert "IMP+SS vs IMP" in {row[0] for row in table1(runs)[1]}
