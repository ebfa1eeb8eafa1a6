"""RepeatConv2d generates its weight on every forward, so no write to its parameters can leave a
stale output; ``repeatseg.cached`` is the explicit scope that generates once, and forgets on exit."""

import copy
import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

import repeatseg
from repeatseg.layers import RepeatConv2d, cached, generating_layers
from repeatseg.layers.transforms import TRANSFORMS
from tests.tiny import tiny

OPTIONS = {"flip": {"score_init": (-1.0, 1.0)}, "coarse_flip": {"score_init": (-1.0, 1.0)}}


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


# ------------------------------------------------------------------------- never stale, whole models

@pytest.fixture(scope="module")
def segmenter_name():
    return tiny("resnet18", 4, "flip").name


def fresh_reference(model, name):
    """A segmenter built anew from ``model``'s state: what its outputs must equal."""
    reference = repeatseg.build_segmenter(name, classes=3).to(next(model.parameters()).dtype)
    reference.load_state_dict(model.state_dict())
    return reference.eval()


def _data_write(model, name):
    model.encoder.layer1[0].conv1.parent.data.mul_(2)  # bypasses autograd's version counter
    return model


def _copy_under_no_grad(model, name):
    with torch.no_grad():
        parent = model.encoder.layer2[0].conv1.parent
        parent.copy_(torch.randn_like(parent))
    return model


def _load_state_dict(model, name):
    model.load_state_dict(repeatseg.build_segmenter(name, classes=3).state_dict())
    return model


def _ema_update(model, name):
    """The EMA model, evaluated once, then updated in place towards another model (as EMA code
    does between validations: ``torch._foreach_lerp_`` on detached parameters)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    ema.update_parameters(model)  # the first update copies
    average = ema.module.eval()
    with torch.no_grad():
        average(torch.randn(1, 3, 32, 32))
    ema.update_parameters(repeatseg.build_segmenter(name, classes=3))
    return average


def _to_double(model, name):
    return model.to(torch.float64)


@pytest.mark.parametrize("write", [_data_write, _copy_under_no_grad, _load_state_dict, _ema_update, _to_double],
                         ids=["data-write", "copy-under-no-grad", "load-state-dict", "ema-update", "to-float64"])
def test_eval_outputs_always_equal_a_freshly_built_reference_after_a_write(segmenter_name, write):
    model = repeatseg.build_segmenter(segmenter_name, classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        target = write(model, segmenter_name)
        x = x.to(next(target.parameters()).dtype)
        after = target(x)
        assert torch.equal(after, fresh_reference(target, segmenter_name)(x))
    assert not torch.equal(after.float(), before)  # the write changed what the model computes


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_every_forward_generates_and_nothing_is_kept_after_it(transform):
    conv, x = make(transform), torch.randn(1, 12, 5, 5)
    generated = count_generations(conv)
    for mode in (conv.eval, conv.train):
        mode()
        with torch.no_grad():
            conv(x)
            conv(x)
        conv(x).sum().backward()
    gc.collect()
    assert len(generated) == 6 and all(ref() is None for ref in generated)


# ------------------------------------------------------------------------------------ cached scope

@pytest.mark.parametrize("transform", TRANSFORMS)
def test_cached_generates_once_per_scope_and_matches_plain_forwards(transform):
    conv, x = make(transform).eval(), torch.randn(2, 12, 6, 6)
    with torch.no_grad():
        plain = conv(x)
    generated = count_generations(conv)
    with torch.no_grad(), cached(conv):
        outputs = [conv(x) for _ in range(3)]
        weight = conv.weight.clone()
    assert len(generated) == 1 and all(torch.equal(out, plain) for out in outputs)
    assert torch.equal(weight, conv.transform(conv.parent))
    del generated[1:]
    gc.collect()
    assert generated[0]() is None  # leaving the scope dropped it
    with torch.no_grad():
        conv(x)
    assert len(generated) == 2  # outside the scope: generated again


def test_cached_scope_belongs_to_its_model_and_nests():
    inside, outside, x = make(), make(), torch.randn(1, 12, 5, 5)
    counts = count_generations(inside), count_generations(outside)
    with torch.no_grad(), cached(inside):
        with cached(inside):
            inside(x)
        inside(x)  # the inner scope's exit did not end the outer one
        outside(x)
        outside(x)
    assert [len(c) for c in counts] == [1, 2]


def test_cached_keeps_one_weight_per_grad_mode_so_gradients_still_flow():
    conv, x = make().train(), torch.randn(1, 12, 5, 5)
    with cached(conv):
        with torch.no_grad():
            conv(x)
        conv(F.relu(conv(x))).sum().backward()  # called twice: one generation, both calls' gradients
    cached_grads = [p.grad.clone() for p in conv.parameters()]
    conv.zero_grad()
    conv(F.relu(conv(x))).sum().backward()
    for cached_grad, param in zip(cached_grads, conv.parameters()):
        torch.testing.assert_close(cached_grad, param.grad)


def test_cached_covers_every_generating_layer_of_a_model_and_copies_see_none(segmenter_name):
    model = repeatseg.build_segmenter(segmenter_name, classes=3).eval()
    layers = generating_layers(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        with cached(model):
            assert all(layer.is_cached() for layer in layers)
            assert torch.equal(model(x), plain)
            twin = copy.deepcopy(model)
            assert not any(layer.is_cached() for layer in generating_layers(twin))
    assert not any(layer.is_cached() for layer in layers)


def test_compiled_model_follows_parameter_changes():
    conv, x = make().eval(), torch.randn(1, 12, 5, 5)
    compiled = torch.compile(conv, backend="eager", fullgraph=True)
    with torch.no_grad():
        compiled(x)
        conv.parent.mul_(-1.5)
        expected = F.conv2d(x, conv.transform(conv.parent), None, conv.stride, conv.padding)
        assert torch.equal(compiled(x), expected)


# ----------------------------------------------------------------------------------- autograd paths

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
