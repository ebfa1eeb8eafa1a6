"""Every transform's fused generation against its plain-ops reference and against finite
differences (float64 gradcheck), with both straight-through rules; what it refuses, it refuses clearly."""

import pytest
import torch

from repeatseg.layers import GRADIENT_RULES, TRANSFORMS

N, M, K, TILE_OUT, TILE_IN = 3, 2, 3, 3, 2


def cases():
    """(id, transform name, options): every registered transform, each straight-through rule of those with one."""
    for name, cls in TRANSFORMS.items():
        if "gradient" in cls.OPTIONS:
            for rule in GRADIENT_RULES:
                yield f"{name}-{rule}", name, {"gradient": rule, "score_init": (-1.5, 1.5)}
        else:
            yield name, name, {}


CASES = list(cases())


def build(name, options, dtype=torch.float64):
    torch.manual_seed(0)
    transform = TRANSFORMS[name](TILE_OUT, TILE_IN, (N, M, K, K), **options).to(dtype)
    with torch.no_grad():  # away from the initial pure tiling, so every parameter matters
        for param in transform.parameters():
            if not hasattr(transform, "gradient"):
                param.add_(torch.randn_like(param))
            else:  # scores away from the rules' kinks (0, +-1), where finite differences are one-sided
                param.copy_(_away_from_kinks(param))
    return transform


def _away_from_kinks(scores):
    magnitude = torch.rand_like(scores) * 0.8 + 0.1  # in (0.1, 0.9) or, below, (1.1, 1.9)
    magnitude = torch.where(torch.rand_like(scores) < 0.7, magnitude, magnitude + 1.0)
    return magnitude * torch.where(torch.rand_like(scores) < 0.5, -1.0, 1.0)


def soft(scores, rule):
    """The surrogate whose derivative each straight-through rule is: clamp, or Bi-Real's ApproxSign."""
    if rule == "clamp":
        return scores.clamp(-1.0, 1.0)
    inside = (2.0 - scores.abs()) * scores
    return torch.where(scores.abs() < 1, inside, torch.sign(scores))


def soft_child(transform, parent, scores):
    """The child with each sign replaced by its surrogate, from the documented tile layout."""
    n, m, kh, kw = parent.shape
    shape = (TILE_OUT, n, TILE_IN) + ((m, kh, kw) if scores.dim() == 4 else (1, 1, 1))
    child = soft(scores, transform.gradient).view(shape) * parent.view(1, n, 1, m, kh, kw)
    return child.reshape(TILE_OUT * n, TILE_IN * m, kh, kw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case, name, options", CASES, ids=[c[0] for c in CASES])
def test_fused_generation_matches_the_reference_ops_in_value_and_every_gradient(case, name, options, dtype):
    transform = build(name, options, dtype)
    parent = torch.randn(N, M, K, K, dtype=dtype, requires_grad=True)
    upstream = torch.randn(TILE_OUT * N, TILE_IN * M, K, K, dtype=dtype)
    results = []
    for generate in (transform, transform.reference):
        transform.zero_grad()
        parent.grad = None
        child = generate(parent)
        (child * upstream).sum().backward()
        results.append([child.detach(), parent.grad, *(p.grad for p in transform.parameters())])
    for fused, reference in zip(*results):
        torch.testing.assert_close(fused, reference)
    assert all(g.abs().sum() > 0 for g in results[0][1:])


@pytest.mark.parametrize("case, name, options", CASES, ids=[c[0] for c in CASES])
def test_fused_gradients_pass_gradcheck_in_float64(case, name, options):
    transform = build(name, options)
    parent = torch.randn(N, M, K, K, dtype=torch.float64)
    inputs = [t.detach().clone() for t in transform.generation_inputs()]
    for index, tensor in enumerate([parent, *inputs]):
        if not tensor.is_floating_point() or (index and not transform.generation_inputs()[index - 1].requires_grad):
            continue  # buffers (seeded signs) are not differentiated

        def generate(value, index=index):
            tensors = [parent, *inputs]
            tensors[index] = value
            child = transform.fused(*tensors)
            if index and hasattr(transform, "gradient"):  # the scores: their gradient is the surrogate's
                surrogate = soft_child(transform, tensors[0], value)
                child = child + (surrogate - child).detach()
            return child

        assert torch.autograd.gradcheck(generate, (tensor.clone().requires_grad_(),)), index


@pytest.mark.parametrize("case, name, options", CASES, ids=[c[0] for c in CASES])
def test_double_backward_is_refused_with_a_clear_error(case, name, options):
    transform = build(name, options)
    parent = torch.randn(N, M, K, K, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(transform(parent).square().sum(), parent, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
    (second,) = torch.autograd.grad(  # the reference ops differentiate twice
        torch.autograd.grad(transform.reference(parent).square().sum(), parent, create_graph=True)[0].sum(), parent)
    assert torch.isfinite(second).all()


@pytest.mark.parametrize("case, name, options", CASES, ids=[c[0] for c in CASES])
def test_vmap_is_refused_naming_the_plain_ops_path(case, name, options):
    transform = build(name, options)
    parents = torch.randn(2, N, M, K, K, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match="does not support torch.func.vmap.*reference"):
        torch.func.vmap(transform)(parents)
    batched = torch.func.vmap(transform.reference)(parents)
    torch.testing.assert_close(batched[1], transform(parents[1]))
