"""RepeatConv2d reuses its generated weight: kept for inference until an input changes, shared by
the calls of one step in training, never kept after backward."""

import copy
import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

from repeatseg.layers import ChildTransform, RepeatConv2d
from repeatseg.layers.transforms import TRANSFORMS

OPTIONS = {"flip": {"score_init": (-1.0, 1.0)}}


def make(transform="flip"):
    conv = RepeatConv2d(12, 12, 3, padding=1, tile_in=2, tile_out=3, transform=transform,
                        transform_options=OPTIONS.get(transform))
    with torch.no_grad():  # away from pure tiling, so every input changes the child
        for param in conv.transform.parameters():
            param.add_(torch.randn_like(param))
    return conv


def count_generations(conv: RepeatConv2d) -> list:
    """A list that grows by one (the generated weight) whenever ``conv`` generates its weight."""
    generated = []
    conv.transform.register_forward_hook(lambda module, args, child: generated.append(weakref.ref(child)))
    return generated


def fresh(conv: RepeatConv2d, x: torch.Tensor) -> torch.Tensor:
    """The output from a weight generated now, bypassing every reuse."""
    with torch.no_grad():
        return F.conv2d(x, conv.transform(conv.parent, x.dtype), None, conv.stride, conv.padding)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_eval_inference_generates_once_and_matches_the_uncached_output(transform):
    conv, x = make(transform).eval(), torch.randn(2, 12, 6, 6)
    generated = count_generations(conv)
    with torch.no_grad():
        outputs = [conv(x) for _ in range(3)]
    assert len(generated) == 1
    for out in outputs:
        assert torch.equal(out, fresh(conv, x))
    with torch.inference_mode():
        assert torch.equal(conv(x), outputs[0])


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_optimiser_step_gives_a_freshly_generated_weight(transform):
    conv, x = make(transform).eval(), torch.randn(1, 12, 5, 5)
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.5)
    with torch.no_grad():
        before = conv(x)
    for param in conv.parameters():
        param.grad = torch.randn_like(param)
    optimizer.step()
    with torch.no_grad():
        after = conv(x)
    assert not torch.equal(after, before) and torch.equal(after, fresh(conv, x))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_load_state_dict_gives_a_freshly_generated_weight(transform):
    conv, other, x = make(transform).eval(), make(transform), torch.randn(1, 12, 5, 5)
    with torch.no_grad():
        conv(x)
        conv.load_state_dict(other.state_dict())
        assert torch.equal(conv(x), fresh(other, x))
        conv.load_state_dict(other.state_dict(), assign=True)  # new Parameters
        assert torch.equal(conv(x), fresh(other, x))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_to_gives_a_freshly_generated_weight(transform):
    conv, x = make(transform).eval(), torch.randn(1, 12, 5, 5)
    with torch.no_grad():
        single = conv(x)
        conv.to(torch.float64)
        double = conv(x.double())
        assert double.dtype == torch.float64 and torch.equal(double, fresh(conv, x.double()))
        conv.to(torch.float32)  # a round trip rounds the parameters: the kept weight must not return
        assert torch.equal(conv(x), fresh(conv, x))
        torch.testing.assert_close(conv(x), single)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_train_eval_switch_gives_a_freshly_generated_weight_and_training_keeps_none(transform):
    conv, x = make(transform).eval(), torch.randn(1, 12, 5, 5)
    generated = count_generations(conv)
    with torch.no_grad():
        conv(x)
    conv.train()
    gc.collect()
    assert generated[0]() is None  # train() let the kept weight go
    conv(x).sum().backward()
    gc.collect()
    assert generated[1]() is None  # nothing is kept after backward
    conv.eval()
    with torch.no_grad():
        conv(x)
    assert len(generated) == 3


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_a_layer_called_twice_in_a_step_generates_once_with_the_gradient_of_both_calls(transform):
    conv, x = make(transform).train(), torch.randn(1, 12, 5, 5)
    generated = count_generations(conv)
    conv(F.relu(conv(x))).square().sum().backward()
    assert len(generated) == 1
    reused = {name: p.grad.clone() for name, p in conv.named_parameters()}
    conv.zero_grad()
    weight = conv.transform(conv.parent)  # the same step, written out with one explicit weight
    F.conv2d(F.relu(F.conv2d(x, weight, None, 1, 1)), weight, None, 1, 1).square().sum().backward()
    for name, param in conv.named_parameters():
        torch.testing.assert_close(reused[name], param.grad)
    conv(x).sum().backward()  # the next step generates again
    assert len(generated) == 3


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_a_reused_weight_backpropagates_through_two_separate_graphs(transform):
    conv, x, y = make(transform).train(), torch.randn(1, 12, 5, 5), torch.randn(1, 12, 5, 5)
    first, second = conv(x).sum(), conv(y).square().sum()
    first.backward()
    second.backward()
    together = {name: p.grad.clone() for name, p in conv.named_parameters()}
    conv.zero_grad()
    (conv(x).sum() + conv(y).square().sum()).backward()
    for name, param in conv.named_parameters():
        torch.testing.assert_close(together[name], param.grad)


@pytest.mark.parametrize("transform", ["flip", "swish"])
def test_backward_refuses_an_input_modified_in_place_after_forward(transform):
    conv = make(transform).train()
    out = conv(torch.randn(1, 12, 5, 5)).sum()
    with torch.no_grad():
        conv.parent.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_autocast_generates_in_the_compute_dtype_with_float_gradients(transform):
    conv, x = make(transform).train(), torch.randn(2, 12, 6, 6)
    generated = count_generations(conv)
    with torch.autocast("cpu", torch.bfloat16):
        out = conv(x)
    assert generated[0]().dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    torch.testing.assert_close(generated[0](), conv.transform(conv.parent).bfloat16(), rtol=2e-2, atol=1e-3)
    out.float().square().sum().backward()
    low = {name: p.grad.clone() for name, p in conv.named_parameters()}
    conv.zero_grad()
    conv(x).square().sum().backward()
    for name, param in conv.named_parameters():
        assert low[name].dtype == torch.float32
        assert (low[name] - param.grad).norm() <= 0.05 * param.grad.norm(), name


def test_frozen_parameters_reuse_the_weight_until_they_require_grad_again():
    conv, x = make().eval().requires_grad_(False), torch.randn(1, 12, 5, 5)
    generated = count_generations(conv)
    conv(x)
    conv(x)
    assert len(generated) == 1
    conv.requires_grad_(True)
    conv(x).sum().backward()
    assert len(generated) == 2 and conv.parent.grad is not None


def test_inference_mode_weight_is_not_reused_where_autograd_needs_it():
    conv, x = make().eval(), torch.randn(1, 12, 5, 5, requires_grad=True)
    with torch.inference_mode():
        conv(x.detach())
    conv(x).sum().backward()  # would fail on an inference tensor saved for backward
    assert x.grad is not None


def test_compiled_model_follows_parameter_changes():
    conv, x = make().eval(), torch.randn(1, 12, 5, 5)
    compiled = torch.compile(conv, backend="eager", fullgraph=True)
    with torch.no_grad():
        compiled(x)
        conv.parent.mul_(-1.5)
        assert torch.equal(compiled(x), fresh(conv, x))


def test_copies_start_without_a_kept_weight():
    conv, x = make().eval(), torch.randn(1, 12, 5, 5)
    with torch.no_grad():
        conv(x)
        twin = copy.deepcopy(conv)
        with torch.no_grad():
            twin.parent.mul_(2.0)
        assert twin._generated.key is None
        assert torch.equal(twin(x), fresh(twin, x))


class ScaledTiling(ChildTransform):
    """A transform written as a new family would be: its child depends on a buffer."""

    name, code = "scaled", "z"

    def __init__(self, tile_out, tile_in, parent_shape=None):
        super().__init__(tile_out, tile_in)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, parent, dtype=None):
        return (self.scale * parent).to(dtype or parent.dtype).repeat(self.tile_out, self.tile_in, 1, 1)


def test_a_new_transform_gets_reuse_and_invalidation_by_following_the_pattern():
    conv, x = make("linear").eval(), torch.randn(1, 12, 5, 5)
    conv.transform = ScaledTiling(3, 2)
    generated = count_generations(conv)
    with torch.no_grad():
        conv(x)
        conv(x)
        conv.transform.scale.fill_(-2.0)  # a scheduled value held in a buffer
        out = conv(x)
    assert len(generated) == 2
    assert torch.equal(out, fresh(conv, x))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_regenerating_for_backward_keeps_no_weight_and_gives_the_same_gradients(transform):
    conv, x = make(transform).train(), torch.randn(2, 12, 6, 6, requires_grad=True)
    conv(x).square().sum().backward()
    kept = [p.grad.clone() for p in (*conv.parameters(), x)]
    conv.zero_grad()
    x.grad = None
    conv.regenerate_for_backward = True
    generated = count_generations(conv)
    out = conv(x).square().sum()
    gc.collect()
    assert generated[0]() is None  # only parameters and activations wait for backward
    out.backward()
    for before, param in zip(kept, (*conv.parameters(), x)):
        assert torch.equal(before, param.grad)
    out = conv(x).sum()
    with torch.no_grad():
        conv.parent.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()
