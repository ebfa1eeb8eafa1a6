import pytest
import torch

from repeatseg.layers import GRADIENT_RULES, hard_sign, sign_ste, surrogate_grad


def test_flip_sign_is_never_zero():
    scores = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 3.0])
    for rule in GRADIENT_RULES:
        signs = sign_ste(scores, rule)
        assert set(signs.tolist()) <= {-1.0, 1.0}
    assert hard_sign(torch.zeros(4)).tolist() == [1.0] * 4


def test_forward_value_is_exactly_the_hard_sign():
    scores = torch.randn(10_000) * 0.01  # many values where soft and hard differ a lot
    for rule in GRADIENT_RULES:
        assert torch.equal(sign_ste(scores, rule), hard_sign(scores))


def _numeric_grad(scores: torch.Tensor, rule: str) -> torch.Tensor:
    scores = scores.clone().requires_grad_(True)
    upstream = torch.linspace(-2, 3, scores.numel()).view_as(scores)
    (sign_ste(scores, rule) * upstream).sum().backward()
    return scores.grad / upstream


@pytest.mark.parametrize("rule", GRADIENT_RULES)
def test_straight_through_gradient_matches_its_formula(rule):
    # Avoid the exact kink points, where one-sided derivatives differ.
    scores = torch.tensor([-3.0, -1.5, -0.99, -0.6, -0.25, -0.01, 0.0, 0.02, 0.3, 0.75, 0.999, 1.4, 7.0])
    grad = _numeric_grad(scores, rule)
    if rule == "clamp":
        expected = (scores.abs() <= 1).float()
    else:
        expected = torch.where(scores.abs() < 1, 2 - 2 * scores.abs(), torch.zeros_like(scores))
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(grad, surrogate_grad(scores, rule))


def test_bireal_gradient_by_finite_differences_of_its_polynomial():
    # Bi-Real's ApproxSign: 2x + x^2 on [-1, 0), 2x - x^2 on [0, 1); its derivative is the rule.
    x = torch.tensor([-0.8, -0.3, 0.1, 0.6], dtype=torch.float64)
    approx = lambda v: torch.where(v < 0, 2 * v + v * v, 2 * v - v * v)  # noqa: E731
    eps = 1e-6
    finite = (approx(x + eps) - approx(x - eps)) / (2 * eps)
    torch.testing.assert_close(_numeric_grad(x, "bireal"), finite, rtol=1e-5, atol=1e-6)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="clamp"):
        sign_ste(torch.zeros(2), "tanh")
