import math

import pytest
import torch

from snnlth.engine.fastpath import KernelChoice
from snnlth.snn.fused import PURE
from snnlth.snn.neuron import LIF, LIFParams, SeqReLU, lif_multistep, lif_reference
from snnlth.snn.surrogate import atan_grad, sigmoid_grad, spike


def test_lif_dynamics_by_hand():
    # tau = 4/3: H = 0.25 V + 0.75 X. Input 0.8, 0.8, 0.8, 2.0, 0.0
    # t0: H = 0.6 -> no spike, V = 0.6
    # t1: H = 0.15 + 0.6 = 0.75 -> no spike, V = 0.75
    # t2: H = 0.1875 + 0.6 = 0.7875 -> no spike
    # t3: H = 0.196875 + 1.5 = 1.696875 -> spike, V reset to 0
    # t4: H = 0 + 0 = 0 -> no spike
    x = torch.tensor([0.8, 0.8, 0.8, 2.0, 0.0]).view(5, 1)
    s, h = lif_reference(x)
    assert s.flatten().tolist() == [0, 0, 0, 1, 0]
    assert torch.allclose(h.flatten(), torch.tensor([0.6, 0.75, 0.7875, 1.696875, 0.0]))
    assert torch.equal(lif_multistep(x), s)


def test_threshold_is_inclusive_and_reset_is_hard():
    # H = 0.75 * 4/3 = 1.0 exactly -> fires (V >= V_th), then restarts from 0 each step
    x = torch.full((3, 1), 4.0 / 3.0, dtype=torch.float64)
    assert lif_multistep(x).flatten().tolist() == [1.0, 1.0, 1.0]


def _has_compiler() -> bool:
    import shutil

    return shutil.which("g++") is not None or shutil.which("c++") is not None


NO_COMPILER = pytest.mark.skipif(not _has_compiler(), reason="torch.compile on CPU needs a C++ compiler")
KERNELS = ["eager", "pure", pytest.param("compiled", marks=NO_COMPILER)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid"])
def test_fused_matches_reference(detach_reset, surrogate, kernel):
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 5) * 1.5 + 0.8).requires_grad_()
    g = torch.randn(6, 3, 5)
    s_ref, _ = lif_reference(x, surrogate=surrogate, detach_reset=detach_reset)
    (s_ref * g).sum().backward()
    grad_ref, x.grad = x.grad.clone(), None
    impl = PURE if kernel == "pure" else KernelChoice().kernel(kernel)
    s = lif_multistep(x, LIFParams(surrogate=surrogate, detach_reset=detach_reset), impl)
    (s * g).sum().backward()
    assert torch.equal(s, s_ref)
    assert torch.allclose(x.grad, grad_ref, atol=1e-6)


def test_detached_reset_changes_gradient():
    x = torch.tensor([[1.5], [0.9], [0.9]], requires_grad=True)
    lif_multistep(x, LIFParams(detach_reset=True)).sum().backward()
    g_detached, x.grad = x.grad.clone(), None
    lif_multistep(x, LIFParams(detach_reset=False)).sum().backward()
    assert not torch.allclose(g_detached, x.grad)


def test_gradient_through_time_by_hand():
    # one step below threshold then the output: dS1/dX0 = sg(H1 - 1) * decay * (1/tau)
    x = torch.tensor([[0.4], [0.0]], requires_grad=True)
    s = lif_multistep(x)
    s[1].sum().backward()
    h1 = 0.25 * 0.3  # H0 = 0.3, V0 = 0.3, H1 = 0.075
    expected = atan_grad(torch.tensor(h1 - 1.0), 2.0) * 0.25 * 0.75
    assert torch.allclose(x.grad[0], expected.view(1))
    assert x.grad[1].item() == pytest.approx(atan_grad(torch.tensor(h1 - 1.0), 2.0).item() * 0.75)


def test_surrogate_values():
    x = torch.tensor([0.0, 0.5, -1.0], requires_grad=True)
    spike(x, "atan", 2.0).sum().backward()
    expected = [1.0, 1.0 / (1 + (math.pi / 2) ** 2), 1.0 / (1 + math.pi ** 2)]
    assert x.grad.tolist() == pytest.approx(expected)
    assert spike(x.detach(), "atan").tolist() == [1.0, 1.0, 0.0]
    assert sigmoid_grad(torch.tensor(0.0), 4.0).item() == pytest.approx(1.0)


def test_unknown_surrogate_fails_at_build():
    with pytest.raises(ValueError, match="unknown surrogate 'atna'.*did you mean 'atan'"):
        LIF(surrogate="atna")


def test_no_state_leaks_between_calls():
    lif = LIF()
    a = torch.rand(4, 2, 3) * 2
    first = lif(a)
    lif(torch.full((4, 2, 3), 5.0))  # a batch that fires everywhere
    assert torch.equal(lif(a), first)
    # each sample's spikes depend on that sample only
    assert torch.equal(lif(a[:, :1]), first[:, :1])


def test_spikes_keep_input_dtype_under_bf16():
    x = torch.rand(3, 2, 4, dtype=torch.bfloat16) * 2
    assert lif_multistep(x).dtype == torch.bfloat16


def test_relu_neuron():
    assert SeqReLU()(torch.tensor([-1.0, 2.0])).tolist() == [0.0, 2.0]


def test_neurons_are_found_by_predicate_not_type():
    from torch import nn

    from snnlth.engine.evaluate import SpikeCounter
    from snnlth.snn.neuron import LIF, SeqReLU, is_spiking_neuron

    class BaseNode(nn.Module):  # the name of spikingjelly's neuron base class
        def forward(self, x):
            return (x > 0).float()

    class LIFNode(BaseNode):  # a subclass, as spikingjelly's own neurons are
        pass

    class Leaky(nn.Module):
        spiking_neuron = True  # any module may declare itself a neuron

        def forward(self, x):
            return (x >= 1).float()

    assert is_spiking_neuron(LIF()) and is_spiking_neuron(LIFNode()) and is_spiking_neuron(Leaky())
    assert not is_spiking_neuron(SeqReLU()) and not is_spiking_neuron(nn.ReLU())
    net = nn.Sequential(LIFNode(), nn.Identity(), Leaky(), nn.ReLU())
    x = torch.tensor([[-1.0, 0.5, 2.0, 3.0]])
    with SpikeCounter(net) as counter:
        net(x)
    assert set(counter.per_layer) == {"0", "2"} and counter.total() == 3 + 3


def test_a_failing_compiled_kernel_falls_back_to_the_eager_one():
    from snnlth.engine.kernels import CompiledKernel

    def compile_fn(fn):
        def broken(*args):
            raise RuntimeError("no C++ compiler found\nmore lines")
        return broken

    kernel = CompiledKernel(compile_fn)
    x = (torch.randn(4, 3, 5) * 1.5).requires_grad_()
    with pytest.warns(RuntimeWarning, match="compiled LIF kernel failed .RuntimeError: no C.. compiler found.; using"):
        s = lif_multistep(x, kernel=kernel)
    s.sum().backward()  # the backward uses the eager loops too, without a second warning
    assert torch.equal(s, lif_multistep(x.detach()))
    assert kernel.failed.startswith("RuntimeError") and not kernel.fuses
    with pytest.raises(ValueError, match="unknown LIF kernel 'fast'"):
        KernelChoice().kernel("fast")


def test_out_of_memory_in_the_compiled_kernel_is_not_a_compile_failure():
    from snnlth.engine.kernels import CompiledKernel

    def compile_fn(fn):
        def oom(*args):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return oom

    kernel = CompiledKernel(compile_fn)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        lif_multistep(torch.randn(3, 2), kernel=kernel)
    assert kernel.failed is None  # the compiled kernel stays in use
