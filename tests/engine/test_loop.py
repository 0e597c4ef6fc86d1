import math

import pytest
import torch

from snnlth.config import ModelConfig, TrainConfig, TrainRunConfig
from snnlth.data import load_data
from snnlth.engine.evaluate import seq_correct, seq_loss
from snnlth.engine.loop import FitHooks, FitSettings, FitState, Schedule, fit
from snnlth.engine.optim import cosine_lr, make_optimizer, resolve_device
from snnlth.errors import ConfigError
from snnlth.models import create_model


def test_cosine_schedule():
    assert cosine_lr(0.3, 0, 10) == 0.3
    assert cosine_lr(0.3, 5, 10) == pytest.approx(0.15)
    assert cosine_lr(0.3, 9, 10) == pytest.approx(0.15 * (1 + math.cos(math.pi * 0.9)))


def test_weight_decay_really_applied():
    model = torch.nn.Linear(2, 1, bias=False)
    opt = make_optimizer(model, TrainConfig(lr=1.0, momentum=0.0, weight_decay=0.5))
    assert opt.param_groups[0]["weight_decay"] == 0.5 and opt.param_groups[0]["dampening"] == 0
    with torch.no_grad():
        model.weight.fill_(1.0)
    model.weight.grad = torch.zeros_like(model.weight)
    opt.step()
    assert torch.allclose(model.weight, torch.full_like(model.weight, 0.5))


def test_loss_is_mean_over_timesteps_and_prediction_uses_the_sum():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 5.0]]])  # T=2, B=1: step 0 says class 0, the sum says class 1
    y = torch.tensor([0])
    ce = torch.nn.functional.cross_entropy
    expected = (ce(logits[0], y) + ce(logits[1], y)) / 2
    assert seq_loss(logits, y).item() == pytest.approx(expected.item())
    assert seq_correct(logits, y).item() == 0 and seq_correct(logits, torch.tensor([1])).item() == 1


def test_cuda_without_gpu_is_a_config_error():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def _setup(fmnist_dir, seed=0):
    cfg = TrainRunConfig(model=ModelConfig(model="lenet300", timesteps=2),
                         train=TrainConfig(epochs=3, batch_size=50, lr=0.05, seed=seed))
    data = load_data(cfg.data, torch.device("cpu"), data_dir=str(fmnist_dir))
    torch.manual_seed(seed)
    model = create_model(cfg.model, 1, 28, 10)
    return cfg, data, model, make_optimizer(model, cfg.train)


def test_same_seed_same_result_and_resume_is_exact(fmnist_dir):
    cfg, data, model, opt = _setup(fmnist_dir)
    full = fit(model, opt, data, FitSettings(cfg.train), Schedule(3, 2))
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    cfg, data, model2, opt2 = _setup(fmnist_dir)
    part = fit(model2, opt2, data, FitSettings(cfg.train), Schedule(cfg.train.epochs, 2), FitState())
    assert [h["train_loss"] for h in part.history] == [h["train_loss"] for h in full.history]

    # interrupt after epoch 1: rebuild everything from a state dict copy, as a resumed process would
    cfg, data, model3, opt3 = _setup(fmnist_dir)
    snap = {}

    def keep_first(st):
        if st.epoch == 1:
            snap.update(model=model3.state_dict(), opt=opt3.state_dict(), hist=list(st.history))
            snap["model"] = {k: v.clone() for k, v in snap["model"].items()}

    fit(model3, opt3, data, FitSettings(cfg.train), Schedule(3, 2, stop_epoch=1),
        hooks=FitHooks(on_epoch_end=keep_first))
    cfg, data, model4, opt4 = _setup(fmnist_dir, seed=0)
    model4.load_state_dict(snap["model"])
    opt4.load_state_dict(snap["opt"])
    resumed = fit(model4, opt4, data, FitSettings(cfg.train), Schedule(3, 2), FitState(1, snap["hist"]))
    assert [h["test_accuracy"] for h in resumed.history] == [h["test_accuracy"] for h in full.history]
    assert all(torch.equal(weights[k], v) for k, v in model4.state_dict().items())


def test_training_reduces_loss(fmnist_dir):
    cfg, data, model, opt = _setup(fmnist_dir)
    st = fit(model, opt, data, FitSettings(cfg.train), Schedule(3, 2))
    assert st.history[-1]["train_loss"] < st.history[0]["train_loss"]
    accs = [h["test_accuracy"] for h in st.history]
    assert st.best_test_accuracy == max(accs) and accs[-1] > 15.0  # 10 classes: chance is 10 %
    assert [h["epoch"] for h in st.history] == [1, 2, 3]


def test_evaluate_counts_spikes_per_image(fmnist_dir):
    from snnlth.engine.evaluate import SpikeCounter, evaluate

    cfg, data, model, _ = _setup(fmnist_dir)
    res = evaluate(model, data, 2)
    with SpikeCounter(model) as counter:
        with torch.no_grad():
            model.eval()
            for i in range(0, 100, 50):
                from snnlth.data.augment import normalize

                model(normalize(data.test_x[i:i + 50], (0.5,), (0.5,)), 2)
    assert set(counter.per_layer) == {"lif1", "lif2"}
    assert res["spikes_per_image"] == pytest.approx(counter.total() / 100) and res["spikes_per_image"] > 0
    assert not model.lif1._forward_hooks  # hooks removed
    ann = create_model(ModelConfig(model="lenet300", neuron="relu"), 1, 28, 10)
    assert evaluate(ann, data, 2)["spikes_per_image"] == 0.0


class _HalveOnce:
    """A batch hook: after step 3 (and at every epoch's end, a no-op then), prune half of each tensor; its masks from
    the start when it already pruned (a resumed phase)."""

    def __init__(self, names, model, pruned=False):
        self.calls, self.pruned = [], pruned
        self.masks = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) > 0.5
                      for n, p in model.named_parameters() if n in names}

    def current(self):
        return self.masks if self.pruned else None

    def after_step(self, model, step):
        self.calls.append(step)
        if step == 3 and not self.pruned:
            self.pruned = True
            return self.masks
        return None


def test_a_batch_hook_changes_the_masks_mid_phase_and_a_resumed_phase_keeps_them(fmnist_dir):
    from snnlth import masks as M
    from snnlth.engine.masking import MaskEnforcer

    cfg, data, model, opt = _setup(fmnist_dir)
    names = model.prunable_names()
    hook = _HalveOnce(names, model)
    dense = M.ones_like({n: p for n, p in model.named_parameters() if n in names})
    with pytest.raises(ValueError, match="train with masks"):
        fit(model, opt, data, FitSettings(cfg.train), Schedule(1, 2), hooks=FitHooks(batch_hook=hook))
    batches = -(-data.num_train // cfg.train.batch_size)
    fit(model, opt, data, FitSettings(cfg.train), Schedule(2, 2),
        hooks=FitHooks(enforcer=MaskEnforcer(model, dense), batch_hook=hook))
    assert hook.calls[:batches + 1] == [*range(1, batches + 1), batches]  # every step, then the epoch's end
    params = dict(model.named_parameters())
    assert all((params[n][~m] == 0).all() and (params[n][m] != 0).all() for n, m in hook.masks.items())

    _, _, model2, opt2 = _setup(fmnist_dir)  # a resumed phase: the enforcer built dense, the hook has pruned
    fit(model2, opt2, data, FitSettings(cfg.train), Schedule(1, 2),
        hooks=FitHooks(enforcer=MaskEnforcer(model2, dense), batch_hook=_HalveOnce(names, model2, pruned=True)))
    params = dict(model2.named_parameters())
    assert all((params[n][~m] == 0).all() for n, m in hook.masks.items())
