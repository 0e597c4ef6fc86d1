"""Property test: any invalid value of any numeric or enumerated flag, an unknown or misspelt flag, a missing run
directory: ``snnlth train|search|report|export`` exit 2 with one line on stderr, no traceback, no file written."""

import dataclasses
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnlth.cli import main
from snnlth.config import SearchRunConfig, TrainRunConfig
from snnlth.config_io import _field_type, _is_tuple, flag_name


def _flags(cfg_cls) -> list[tuple[str, str, tuple | None]]:
    """(flag, kind, choices) of every config field a random word cannot satisfy: numbers and enumerations."""
    out = []
    for sec in dataclasses.fields(cfg_cls):
        for f in dataclasses.fields(sec.type if isinstance(sec.type, type) else type(getattr(cfg_cls(), sec.name))):
            typ, _ = _field_type(f)
            if _is_tuple(f) or typ is bool:
                continue
            choices = f.metadata.get("choices")
            if typ in (int, float) or choices:
                out.append((flag_name(f.name), "number" if typ in (int, float) else "choice", choices))
    return out


# names checked against a registry: any word but a registered name (or a prefix-free variant of one) is invalid
NAMED = [("--model", "name", ("convnet", "lenet300", "vgg16", "resnet19")),
         ("--dataset", "name", ("fmnist", "cifar10", "cifar100", "svhn", "tinyimagenet")),
         ("--surrogate", "name", ("atan", "sigmoid"))]
SEARCH_NAMED = [("--method", "name", ("imp", "eb", "random", "reinit", "snip", "oneshot", "transfer")),
                ("--preset", "name", ())]
FLAGS = {"train": _flags(TrainRunConfig) + NAMED, "search": _flags(SearchRunConfig) + NAMED + SEARCH_NAMED}
WORD = st.text(string.ascii_letters, min_size=1, max_size=8).filter(lambda w: w.lower() not in ("nan", "inf",
                                                                                                 "infinity"))


def _run(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


@st.composite
def invalid_calls(draw):
    command = draw(st.sampled_from(["train", "search", "report", "export"]))
    if command in ("report", "export"):
        args = [draw(st.sampled_from(["missing_run", "missing_parent/run"]))]
        return [command, *args, "--out", "out/x"]
    kind = draw(st.sampled_from(["value", "value", "unknown"]))
    if kind == "unknown":
        return [command, "--" + draw(WORD) + "-zz", "1", "--out", "run"]
    flag, _, choices = draw(st.sampled_from(FLAGS[command]))
    value = draw(WORD.filter(lambda w: not choices or w.lower() not in choices))
    return [command, flag, value, "--out", "run"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=invalid_calls())
def test_invalid_input_exits_2_in_one_line_and_writes_nothing(argv, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("SNNLTH_DATA", str(tmp_path / "no_data"))
    rc, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2, (argv, err)
    assert len(lines) == 1 and lines[0].startswith("snnlth") and "Traceback" not in err, (argv, err)
    assert not os.listdir(work), (argv, os.listdir(work))
