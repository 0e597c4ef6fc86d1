import argparse
import dataclasses

import pytest

from snnlth.config import DataConfig, ModelConfig, RuntimeConfig, TrainConfig, TrainRunConfig
from snnlth.config_io import add_config_flags, config_hash, overrides_from_namespace, resolve_config
from snnlth.errors import ConfigError


@pytest.mark.parametrize("make,match", [
    (lambda: ModelConfig(timesteps=0), "--timesteps must be >= 1"),
    (lambda: TrainConfig(lr=0), "--lr must be > 0"),
    (lambda: TrainConfig(lr=-0.1), "--lr must be > 0"),
    (lambda: TrainConfig(epochs=0), "--epochs must be >= 1"),
    (lambda: TrainConfig(batch_size=0), "--batch-size must be >= 1"),
    (lambda: RuntimeConfig(device="tpu"), "--device must be one of auto, cpu, cuda"),
    (lambda: ModelConfig(neuron="izh"), "--neuron must be one of lif, relu"),
    (lambda: DataConfig(train_subset=0), "--train-subset must be a positive"),
])
def test_validation_errors_name_the_flag(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def _parse(argv):
    p = argparse.ArgumentParser()
    add_config_flags(p, TrainRunConfig)
    return overrides_from_namespace(p.parse_args(argv))


def test_flags_override_toml(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[model]\ntimesteps = 3\nmodel = 'lenet300'\n[train]\nepochs = 7\naugment_ignored = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key in \[train\] 'augment_ignored'"):
        resolve_config(TrainRunConfig, str(f), {})
    f.write_text("[model]\ntimesteps = 3\nmodel = 'lenet300'\n[train]\nepochs = 7\n")
    cfg = resolve_config(TrainRunConfig, str(f), _parse(["--timesteps", "4", "--no-augment", "--train-subset", "50"]))
    assert (cfg.model.timesteps, cfg.model.model, cfg.train.epochs) == (4, "lenet300", 7)
    assert cfg.data.augment is False and cfg.data.train_subset == 50


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(TrainRunConfig, str(tmp_path / "none.toml"), {})
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(TrainRunConfig, str(tmp_path / "bad.toml"), {})
    (tmp_path / "sec.toml").write_text("[modle]\ntimesteps = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        resolve_config(TrainRunConfig, str(tmp_path / "sec.toml"), {})
    (tmp_path / "typ.toml").write_text("[model]\ntimesteps = 'five'\n")
    with pytest.raises(ConfigError, match=r"\[model\] timesteps must be a int"):
        resolve_config(TrainRunConfig, str(tmp_path / "typ.toml"), {})


def test_flag_type_errors():
    with pytest.raises(ConfigError, match="epochs must be a int"):
        resolve_config(TrainRunConfig, None, _parse(["--epochs", "two"]))
    cfg = resolve_config(TrainRunConfig, None, _parse(["--train-subset", "none", "--lr", "0.3"]))
    assert cfg.data.train_subset is None and cfg.train.lr == 0.3


def test_run_hash_is_pinned_and_ignores_defaults_and_paths():
    base = TrainRunConfig()
    assert config_hash(base, "train") == "5618b398"
    same = TrainRunConfig(train=TrainConfig(seed=3), runtime=RuntimeConfig(data_dir="/x", device="cpu", eval_every=7,
                                                                         eval_batch_size=1000))
    assert config_hash(same, "train") == config_hash(base, "train")
    other = TrainRunConfig(model=ModelConfig(timesteps=3))
    assert config_hash(other, "train") == "022b915a"
    # before --bn-time existed BN was pooled over T·B: --bn-time pooled keeps the names those runs had
    assert config_hash(TrainRunConfig(model=ModelConfig(bn_time="pooled")), "train") == "1c8392ad"
    assert config_hash(TrainRunConfig(model=ModelConfig(timesteps=3, bn_time="pooled")), "train") == "9bddaa22"


def _name(cfg, method="imp"):
    """The hash a search run is named by: its method's registry entry says which fields it reads."""
    from snnlth.methods.registry import METHODS

    return config_hash(cfg, method, METHODS.get(method).ignored(cfg))


def test_search_hash_is_pinned_and_follows_every_semantic_field():
    from snnlth.config import SearchConfig, SearchRunConfig

    base = SearchRunConfig()
    et = SearchRunConfig(search=SearchConfig(early_time="auto"))
    assert (_name(base), _name(et)) == PINNED_SEARCH
    eb = SearchRunConfig(search=SearchConfig(method="eb"))
    assert _name(eb, "eb") != _name(base)
    changed = [SearchRunConfig(search=SearchConfig(prune_rate=0.2)), SearchRunConfig(search=SearchConfig(rounds=5)),
               SearchRunConfig(train=TrainConfig(lr=0.3)), SearchRunConfig(data=DataConfig(train_subset=100)),
               SearchRunConfig(model=ModelConfig(bn_time="pooled")), et,
               SearchRunConfig(search=SearchConfig(early_time="auto", et_threshold=0.5))]
    hashes = {_name(c) for c in changed}
    assert len(hashes) == len(changed) and _name(base) not in hashes
    unchanged = SearchRunConfig(runtime=RuntimeConfig(eval_every=50, device="cpu", checkpoint_every=3))
    assert _name(unchanged) == _name(base)


def test_fields_a_method_does_not_read_never_split_its_runs():
    from snnlth.config import SearchConfig, SearchRunConfig

    base = SearchRunConfig()
    for ignored in (SearchConfig(target_sparsity=("0.5",)), SearchConfig(eb_window=3), SearchConfig(et_threshold=0.1),
                    SearchConfig(retrain_at=("all",)), SearchConfig(et_warmup_epochs=4)):
        assert _name(SearchRunConfig(search=ignored)) == _name(base)  # imp, no Early-Time: none of these matter
    eb = SearchRunConfig(search=SearchConfig(method="eb"))
    assert _name(SearchRunConfig(search=SearchConfig(method="eb", eb_window=3)), "eb") != _name(eb, "eb")
    et = SearchRunConfig(search=SearchConfig(early_time="2"))
    assert _name(SearchRunConfig(search=SearchConfig(early_time="2", retrain_at=("all",)))) != _name(et)
    assert _name(SearchRunConfig(search=SearchConfig(early_time="2", et_threshold=0.1))) == _name(et)  # auto only
    eb_et = SearchRunConfig(search=SearchConfig(method="eb", early_time="2"))
    assert _name(SearchRunConfig(search=SearchConfig(method="eb", early_time="2", retrain_at=("all",))), "eb") == \
        _name(eb_et, "eb")  # Early-Bird retrains every ticket: --retrain-at is not its field
    floats = SearchRunConfig(search=SearchConfig(method="eb", target_sparsity=("0.5",)))
    assert _name(SearchRunConfig(search=SearchConfig(method="eb", target_sparsity=("0.5",), rounds=9)), "eb") == \
        _name(floats, "eb")  # rounds only matter for --target-sparsity imp
    assert _name(SearchRunConfig(search=SearchConfig(method="eb", rounds=9)), "eb") != _name(eb, "eb")


def test_cutout_datasets_carry_the_pipeline_change_in_their_identity():
    from snnlth.api import identity_facts
    from snnlth.config import SearchRunConfig

    cifar = SearchRunConfig(data=DataConfig(dataset="cifar10"), model=ModelConfig(bn_time="pooled"))
    assert identity_facts(cifar) == {"data": {"cutout": "before-normalisation"}}
    assert identity_facts(SearchRunConfig(data=DataConfig(dataset="cifar10", augment=False))) == {}
    assert identity_facts(SearchRunConfig()) == {}  # Fashion-MNIST has no Cutout: its names stay
    assert config_hash(cifar, "imp", (), identity_facts(cifar)) != config_hash(cifar, "imp")


PINNED_SEARCH = ("7d80cf56", "420daa4d")


def test_every_recipe_field_names_the_run_and_no_runtime_knob_does():
    """The recipe ([data], [model], [train], [search]) is the run's identity: a change of any of its fields shows
    in the semantic dict (and the hash); [runtime] (device, kernels, paths, evaluation) never does."""
    import copy

    from snnlth.config import SearchRunConfig
    from snnlth.config_io import RUNTIME, semantic_dict

    base = SearchRunConfig()
    for sec in dataclasses.fields(base):
        section = getattr(base, sec.name)
        for f in dataclasses.fields(section):
            cfg, changed = copy.deepcopy(base), copy.deepcopy(section)
            object.__setattr__(changed, f.name, "~changed~")  # past validation: only the bookkeeping is tested
            object.__setattr__(cfg, sec.name, changed)
            ident = semantic_dict(cfg)
            if sec.name == RUNTIME:
                assert ident == semantic_dict(base), f"runtime.{f.name} changed the run's identity"
                assert config_hash(cfg, "imp") == config_hash(base, "imp")
            else:
                assert ident.get(sec.name, {}).get(f.name) == "~changed~", f"{sec.name}.{f.name} is not named"
    assert "sync_bn" in {f.name for f in dataclasses.fields(base.train)}  # --sync-bn changes results
    assert {f.name for f in dataclasses.fields(base.runtime)} >= {"device", "lif_kernel", "compile", "cuda_graph",
                                                                 "eval_batch_size", "data_dir"}
