import pytest
import torch

from repeatseg.layers import FlipRepeat, LinearRepeat, SwishRepeat, make_transform

N, M, K = 3, 2, 3  # parent (n, m, k, k)


def tile(child: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Tile (i, j) as documented: child[i*n:(i+1)*n, j*m:(j+1)*m]."""
    return child[i * N:(i + 1) * N, j * M:(j + 1) * M]


@pytest.mark.parametrize("tile_out, tile_in", [(1, 1), (2, 1), (1, 3), (4, 2)])
def test_linear_tiles_are_copies_of_the_parent(tile_out, tile_in):
    parent = torch.randn(N, M, K, K)
    child = LinearRepeat(tile_out, tile_in)(parent)
    assert child.shape == (tile_out * N, tile_in * M, K, K)
    for i in range(tile_out):
        for j in range(tile_in):
            assert torch.equal(tile(child, i, j), parent)


def test_swish_tile_ij_uses_its_own_scalars():
    parent = torch.randn(N, M, K, K)
    swish = SwishRepeat(3, 2)
    with torch.no_grad():
        swish.b1.copy_(torch.randn(3, 2))
        swish.b2.copy_(torch.randn(3, 2))
    child = swish(parent)
    for i in range(3):
        for j in range(2):
            b1, b2 = swish.b1[i, j], swish.b2[i, j]
            expected = b1 * parent / (1 + torch.exp(b2 * parent))
            torch.testing.assert_close(tile(child, i, j), expected)


def test_swish_starts_as_pure_tiling():
    parent = torch.randn(N, M, K, K)
    torch.testing.assert_close(SwishRepeat(2, 2)(parent), LinearRepeat(2, 2)(parent))


def test_flip_tile_ij_is_parent_times_signs_of_its_scores():
    parent = torch.randn(N, M, K, K)
    flip = FlipRepeat(2, 3, (N, M, K, K), score_init=(-1.0, 1.0))
    child = flip(parent)
    signs = torch.where(flip.scores >= 0, 1.0, -1.0)
    for i in range(2):
        for j in range(3):
            assert torch.equal(tile(child, i, j), tile(signs, i, j) * parent)


def test_flip_default_init_is_authors_uniform_and_pure_tiling():
    flip = FlipRepeat(4, 4, (16, 16, 3, 3))
    assert flip.scores.min() >= 0 and flip.scores.max() < 1e-3
    parent = torch.randn(16, 16, 3, 3)
    assert torch.equal(flip(parent), LinearRepeat(4, 4)(parent))


def test_flip_score_init_is_configurable():
    flip = FlipRepeat(2, 2, (4, 4, 1, 1), score_init=(-0.5, 0.5))
    assert flip.scores.min() < 0 < flip.scores.max() and flip.scores.abs().max() <= 0.5


def test_unknown_transform_lists_valid_ones():
    with pytest.raises(ValueError, match="linear.*swish.*flip"):
        make_transform("rotate", 2, 2, (1, 1, 1, 1))
