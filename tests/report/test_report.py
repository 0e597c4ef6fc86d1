import json
import shutil
from html.parser import HTMLParser

import pytest

from snnlth.api import search
from snnlth.cli import main
from snnlth.report.collect import ReportError, load_runs
from snnlth.report.plots import FIGURES
from snnlth.report.tables import table1
from tests.helpers import search_cfg


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from tests.helpers import make_fmnist

    root = tmp_path_factory.mktemp("runs")
    data = make_fmnist(root / "data")
    imp = search(search_cfg(data, rounds=2), out=root / "imp").run_dir
    eb = search(search_cfg(data, method="eb", target_sparsity=(0.5, 0.75), eb_window=2, eb_threshold=0.5,
                           early_time="auto", et_warmup_epochs=1, et_batch=50, epochs=4), out=root / "eb").run_dir
    return imp, eb


class _Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_report_writes_every_file(two_runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", *map(str, two_runs), "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    drawn = [f for f in FIGURES if f not in ("accuracy_vs_rewind.png", "global_vs_local.png")]  # no such ablation
    for name in ["report.md", "report.html", *drawn]:
        assert (out / name).stat().st_size > 0, name
    assert not (out / "accuracy_vs_rewind.png").exists()
    checker = _Checker()
    checker.feed((out / "report.html").read_text())
    assert not checker.errors and not checker.stack  # balanced: valid structure
    assert len(checker.images) == len(drawn) and all(s.startswith("data:image/png;base64,") for s in checker.images)
    md = (out / "report.md").read_text()
    assert all(f"]({name})" in md for name in drawn)


def test_table1_numbers_equal_the_summaries(two_runs):
    imp_summary = json.loads((two_runs[0] / "summary.json").read_text())
    header, rows = table1(load_runs(list(two_runs)))
    acc_row = next(r for r in rows if r[:2] == ["IMP", "accuracy %"])
    time_row = next(r for r in rows if r[:2] == ["IMP", "search time"])
    for lv in imp_summary["levels"]:
        col = header.index(f"{100 * round(lv['sparsity_all'], 4):.2f} %")
        assert acc_row[col] == f"{lv['test_accuracy']:.2f}"
        assert time_row[col] == f"{lv['search_seconds']:.1f} s"
    eb_row = next(r for r in rows if r[:2] == ["EB+ET", "accuracy %"])
    eb_summary = json.loads((two_runs[1] / "summary.json").read_text())
    assert sorted(x for x in eb_row[2:] if x != "–") == sorted(f"{lv['test_accuracy']:.2f}"
                                                              for lv in eb_summary["levels"])


def test_running_run_is_reported_with_what_is_missing(two_runs, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(two_runs[0], partial)
    (partial / "summary.json").unlink()
    with (partial / "metrics.jsonl").open("a") as fh:
        fh.write('{"epoch": 1, "phase": "round_0')  # a line being written
    assert main(["report", str(partial), "--out", str(tmp_path / "rep")]) == 0
    printed = capsys.readouterr().out
    assert "missing summary.json" in printed and "a line being written" in printed
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Incomplete runs" in md and "running or stopped" in md
    runs = load_runs([partial])
    assert [lv["round"] for lv in runs[0].levels] == [0, 1, 2]  # finished rounds, from metrics.jsonl
    # true sparsities of all parameters, exactly those the finished run reports (not the nominal prunable ones)
    done = json.loads((two_runs[0] / "summary.json").read_text())["levels"]
    assert [lv["sparsity_all"] for lv in runs[0].levels] == [lv["sparsity_all"] for lv in done]
    assert [lv["pruned_weights"] for lv in runs[0].levels] == [lv["pruned_weights"] for lv in done]
    assert done[1]["sparsity_all"] < done[1]["sparsity_prunable"]


def test_refuses_mixed_models_and_non_runs(two_runs, tmp_path, fmnist_dir, capsys):
    other = search(search_cfg(fmnist_dir, model="convnet", rounds=1, epochs=1, timesteps=1), out=tmp_path / "c")
    with pytest.raises(ReportError, match="mix models/datasets"):
        load_runs([two_runs[0], other.run_dir])
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_parent_directory_expands_to_its_runs(two_runs):
    runs = load_runs([two_runs[0].parent])
    assert {r.path.name for r in runs} == {"imp", "eb"}
