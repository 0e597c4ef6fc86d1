import pytest
import torch

from snnlth.config import ModelConfig, TrainRunConfig
from snnlth.errors import RunDirError, StorageError
from snnlth.rundir.atomic import atomic_write_json, atomic_write_text, read_json
from snnlth.rundir.layout import Identity, RunLayout, default_run_dir
from snnlth.rundir.store import load_blob, save_blob


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "f.json"
    atomic_write_json(p, {"x": 1})
    atomic_write_json(p, {"x": 2})
    assert read_json(p) == {"x": 2}
    assert [f.name for f in p.parent.iterdir()] == ["f.json"]


def test_failed_write_keeps_old_content(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(StorageError, match=r"cannot write .*f.txt: disk full \(the previous f.txt is intact\)"):
        atomic_write_text(p, "new")
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["f.txt"]


def test_blob_roundtrip_and_damage_detected(tmp_path):
    p = tmp_path / "c.pt"
    save_blob(p, {"w": torch.arange(5.0), "epoch": 3})
    got = load_blob(p)
    assert torch.equal(got["w"], torch.arange(5.0)) and got["epoch"] == 3
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(RunDirError, match="damaged"):
        load_blob(p)


def test_bad_json_is_a_run_dir_error(tmp_path):
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(RunDirError, match="not valid JSON"):
        read_json(tmp_path / "x.json")


def test_run_dir_status(tmp_path):
    cfg = TrainRunConfig()
    me = Identity.of("train", cfg)
    run = RunLayout(tmp_path / "r")
    assert run.status(me) == "new"
    run.write_header(me, cfg, {})
    assert run.status(me) == "resume"
    with pytest.raises(RunDirError, match="holds a different run.*model.timesteps: default there, 3 here"):
        run.status(Identity.of("train", TrainRunConfig(model=ModelConfig(timesteps=3))))
    (run.path / "summary.json").write_text("{}")
    assert run.status(me) == "done"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not an snnlth run"):
        RunLayout(tmp_path / "junk").status(me)


def test_stale_temp_files_of_a_killed_write_are_removed_on_open(tmp_path):
    """A kill during the header write leaves only ``.config.json.<random>.tmp``: the directory is a new run, not
    'files that are not an snnlth run' forever; temp files inside a started run go too, nothing else does."""
    cfg = TrainRunConfig()
    me = Identity.of("train", cfg)
    run = RunLayout(tmp_path / "r")
    run.path.mkdir()
    (run.path / ".config.json.k3j2x9.tmp").write_text('{"kind": "tra')
    assert run.status(me) == "new" and not any(run.path.iterdir())
    run.write_header(me, cfg, {})
    (run.path / "masks").mkdir()
    (run.path / "masks" / ".round_01.pt.a8b7.tmp").write_bytes(b"half")
    (run.path / "masks" / "round_00.pt").write_bytes(b"kept")
    assert run.status(me) == "resume"
    assert [p.name for p in (run.path / "masks").iterdir()] == ["round_00.pt"]
    # a directory that is not a run keeps every file, its own hidden temp files included
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".notes.tmp").write_text("draft")
    (mine / ".config.json.x1y2.tmp").write_text("{")
    with pytest.raises(RunDirError, match="not an snnlth run"):
        RunLayout(mine).status(me)
    assert sorted(p.name for p in mine.iterdir()) == [".config.json.x1y2.tmp", ".notes.tmp"]


def test_default_run_dir_name():
    assert str(default_run_dir("train", TrainRunConfig(), "runs")) == "runs/train-convnet-fmnist-T5-5618b398/seed_0"
    # pooled BatchNorm is what runs did before --bn-time existed: those keep their old names and stay resumable
    pooled = TrainRunConfig(model=ModelConfig(bn_time="pooled"))
    assert str(default_run_dir("train", pooled, "runs")) == "runs/train-convnet-fmnist-T5-1c8392ad/seed_0"
