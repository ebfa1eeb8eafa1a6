"""Children that are not whole multiples of their parent: cropped whole tiles, and the authors' rule."""

import pytest
import torch
import torch.nn.functional as F

from repeatseg.layers import RepeatConv2d, SwishRepeat, make_transform
from repeatseg.layers.partial_tiles import CroppedTiles, SwishRemainder, partial_transform

PARENT = (5, 3, 3, 3)  # (n, m, k, k)


def test_crop_is_the_whole_tile_child_cropped_to_the_width():
    torch.manual_seed(0)
    parent = torch.randn(PARENT)
    cropped = partial_transform("crop", "swish", PARENT, (12, 7), swish_init="xavier")
    assert isinstance(cropped, CroppedTiles) and (cropped.tile_out, cropped.tile_in) == (3, 3)
    whole = cropped.tiles(parent)
    child = cropped(parent)
    assert child.shape == (12, 7, 3, 3) and child.is_contiguous()
    torch.testing.assert_close(child, whole[:12, :7])
    # every child weight is its tile's psi of the parent weight it repeats
    b1, b2 = cropped.tiles.b1, cropped.tiles.b2
    for row, col in [(0, 0), (11, 6), (7, 4), (10, 2)]:
        i, a, j, b = row // 5, row % 5, col // 3, col % 3
        expected = b1[i, j] * parent[a, b] * torch.sigmoid(-b2[i, j] * parent[a, b])
        torch.testing.assert_close(child[row, col], expected)


def test_a_whole_multiple_child_gets_the_plain_transform_under_either_rule():
    for rule in ("crop", "authors"):
        transform = partial_transform(rule, "swish", PARENT, (10, 6))
        assert type(transform) is SwishRepeat and (transform.tile_out, transform.tile_in) == (2, 2)


def test_authors_rule_extends_rows_then_columns_from_the_first_ones():
    torch.manual_seed(0)
    parent = torch.randn(PARENT)
    rule = partial_transform("authors", "swish", PARENT, (12, 7), swish_init="xavier")
    assert isinstance(rule, SwishRemainder) and (rule.tile_out, rule.tile_in) == (2, 2)
    assert (rule.extra_rows, rule.extra_cols) == (2, 1)
    assert all(0 <= v < 1 for v in [*rule.row_scalars.tolist(), *rule.col_scalars.tolist()])
    child = rule(parent)
    assert child.shape == (12, 7, 3, 3)
    whole = rule.tiles(parent)  # (10, 6)
    torch.testing.assert_close(child[:10, :6], whole)
    a, b = rule.row_scalars
    rows = a * whole[:2] * torch.sigmoid(-b * whole[:2])
    torch.testing.assert_close(child[10:, :6], rows)
    c, d = rule.col_scalars
    extended = child[:, :1]
    torch.testing.assert_close(child[:, 6:], c * extended * torch.sigmoid(-d * extended))
    # its own scalars are trained and skip weight decay like the tiles' (kind "transform")
    child.sum().backward()
    assert rule.row_scalars.grad is not None and rule.col_scalars.grad is not None
    assert rule.parameter_kinds() == {"row_scalars": "transform", "col_scalars": "transform"}


def test_authors_rule_counts_one_pair_of_scalars_per_missing_direction():
    rule = partial_transform("authors", "swish", PARENT, (12, 6))  # rows only
    assert rule.col_scalars is None and sum(p.numel() for p in rule.parameters()) == 2 * 4 + 2


def test_bad_rules_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match="crop"):
        partial_transform("authors", "flip", PARENT, (12, 7))
    with pytest.raises(ValueError, match="unknown partial_tiles"):
        partial_transform("round", "swish", PARENT, (12, 7))
    with pytest.raises(ValueError, match="narrower"):
        partial_transform("crop", "swish", PARENT, (4, 7))


@pytest.mark.parametrize("rule", ["crop", "authors"])
def test_repeat_conv_with_partial_tiles_computes_and_folds_its_child(rule):
    torch.manual_seed(0)
    conv = RepeatConv2d(7, 12, 3, padding=1, bias=True, transform="swish", transform_options={"swish_init": "xavier"},
                        parent_channels=(5, 3), partial_tiles=rule, parent_init="xavier")
    assert tuple(conv.parent.shape) == PARENT and conv.weight.shape == (12, 7, 3, 3)
    x = torch.randn(2, 7, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.transform(conv.parent), conv.bias, padding=1))
    folded = conv.folded()
    assert folded.weight.shape == (12, 7, 3, 3)
    torch.testing.assert_close(folded(x), conv(x))
    conv(x).square().mean().backward()
    assert conv.parent.grad is not None and conv.parent.grad.abs().sum() > 0


def test_repeat_conv_without_parent_channels_still_refuses_partial_tiles():
    with pytest.raises(ValueError, match="multiples"):
        RepeatConv2d(7, 12, 3, tile_in=2, tile_out=2, transform="swish")
    whole = RepeatConv2d(6, 10, 3, tile_in=2, tile_out=2, transform="swish")
    assert type(whole.transform) is type(make_transform("swish", 2, 2, PARENT))
