"""FactorTopy's readout against the direct formulation it replaces.

The direct formulation samples every layer with ``grid_sample`` and contracts with
``einsum("bdv,vd->bv")``; :meth:`FactorTopy.readout` gathers all layers at once with
``embedding_bag``. Both compute the same sums of products in different orders, so they may differ
only by rounding, bounded from the arithmetic as in berg-nsd's ``tests/error_bounds.py``
(Higham & Mary's probabilistic model: a float32 sum of ``n`` products has a rounding error of
standard deviation at most ``sqrt(n) * u * sum(|terms|)``, ``u = 2**-24``; a result lies within
``LAMBDA = 8`` standard deviations of the exact value except with probability below 2.5e-14).
"""

from __future__ import annotations

import math

import pytest
import torch
from berg_factortopy.network import FactorTopy, Selection, bilinear_corners
from torch.nn import functional

U32 = 2.0**-24
U64 = 2.0**-53
LAMBDA = 8.0
#: Maps of different sizes, as AlexNet's conv stages and a fully connected (1 x 1) layer.
SHAPES = ((7, 9), (4, 4), (1, 1))
BATCH, DIM, VERTICES = 3, 6, 11


def reference(maps, globals_, selection, weight, bias):
    """The direct formulation (berg-factortopy 0.1's readout)."""
    batch, vertices = globals_.shape[0], selection.location.shape[0]
    grid = selection.location.view(1, vertices, 1, 2).expand(batch, vertices, 1, 2)
    local = 0
    for index, fmap in enumerate(maps):
        sampled = functional.grid_sample(
            fmap, grid, mode="bilinear", padding_mode="border", align_corners=False
        ).squeeze(3)
        local = local + sampled * selection.layer[:, index]
    mixed = torch.lerp(local, globals_ @ selection.layer.T, selection.scale)
    return torch.einsum("bdv,vd->bv", mixed, weight) + bias


def make_inputs(dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    maps = [randn(BATCH, DIM, h, w) for h, w in SHAPES]
    globals_ = randn(BATCH, DIM, len(SHAPES))
    layer = torch.softmax(randn(VERTICES, len(SHAPES)) * 2, dim=1)
    # locations inside, on and beyond the edges (the border is read beyond them)
    location = (torch.rand(VERTICES, 2, generator=generator, dtype=torch.float64) * 2.4 - 1.2).to(
        dtype
    )
    location[0] = torch.tensor([-1.0, 1.0], dtype=dtype)
    scale = torch.rand(VERTICES, generator=generator, dtype=torch.float64).to(dtype)
    weight, bias = randn(VERTICES, DIM), randn(VERTICES)
    return maps, globals_, Selection(layer, location, scale), weight, bias


def forward_sd(maps, globals_, selection, weight, bias):
    """Standard deviation bound of the float32 rounding error of each response (float64)."""
    absolute = reference(
        [m.abs() for m in maps], globals_.abs(), selection, weight.abs(), bias.abs()
    )  # sum(|terms|) of each response: every factor is non-negative
    layers = len(maps)
    # roundings along a term's path: the corner weight (coordinate, fraction, two products,
    # layer weight, 1 - s: 8), the gather of 4L corners, the D-term dot product, the global
    # mixture (L terms, s, two additions)
    n = 8 + 4 * layers + DIM + layers + 4
    # the pixel coordinate ((x + 1) W - 1) / 2 is off by up to 3 u W, so each corner weight is
    # off by that much in absolute terms: bounded with every corner's weight taken as 1
    side = max(max(h, w) for h, w in SHAPES)
    corners = sum(
        selection.layer[:, i]
        * (1 - selection.scale)
        * (weight.abs() @ m.abs().amax(dim=(2, 3)).T).T
        * 4
        for i, m in enumerate(maps)
    )
    return math.sqrt(n) * U32 * absolute + 3 * side * U32 * corners


def test_bilinear_corners_match_grid_sample():
    maps, _, selection, _, _ = make_inputs(torch.float64)
    for fmap in maps:
        height, width = fmap.shape[2:]
        index, weight = bilinear_corners(selection.location, height, width)
        gathered = (fmap.flatten(2)[:, :, index] * weight).sum(3)  # (B, D, V)
        grid = selection.location.view(1, -1, 1, 2).expand(BATCH, -1, 1, 2)
        sampled = functional.grid_sample(
            fmap, grid, mode="bilinear", padding_mode="border", align_corners=False
        ).squeeze(3)
        torch.testing.assert_close(gathered, sampled, rtol=0, atol=1e-12)
        assert torch.allclose(weight.sum(1), torch.ones(VERTICES, dtype=torch.float64))


def test_readout_float32_within_rounding_bound():
    exact_inputs = make_inputs(torch.float64)
    exact = reference(*exact_inputs)
    sd = forward_sd(*exact_inputs)
    inputs = make_inputs(torch.float32)
    new = FactorTopy.readout(*inputs).double()
    old = reference(*inputs).double()
    assert new.shape == (BATCH, VERTICES) and new.dtype == torch.float64
    assert torch.all((new - exact).abs() <= LAMBDA * sd)
    assert torch.all((new - old).abs() <= 2 * LAMBDA * sd)
    assert sd.max() < 1e-5 * exact.abs().max()  # tight enough to catch a wrong term


@pytest.mark.parametrize("kind", ["embedding_bag", "grid_sample"])
def test_readout_gradients_equal_reference(kind, monkeypatch):
    """Gradients of every input, in float64, within the worst-case float64 rounding bound."""
    import berg_factortopy.network as network

    outputs = []
    for function in (FactorTopy.readout, reference):
        maps, globals_, selection, weight, bias = make_inputs(torch.float64)
        leaves = [*maps, globals_, selection.layer, selection.location, selection.scale]
        leaves += [weight, bias]
        for leaf in leaves:
            leaf.requires_grad_(True)
        if kind == "grid_sample" and function is FactorTopy.readout:
            function = network._readout_direct
        y = function(maps, globals_, selection, weight, bias)
        upstream = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y)
        grads = torch.autograd.grad((y * upstream).sum(), leaves)
        outputs.append((y.detach(), [g.detach() for g in grads]))
    (y_new, g_new), (y_old, g_old) = outputs
    # worst case: each gradient entry sums at most BATCH * VERTICES * (5L) * DIM terms, each with
    # at most 30 roundings, each term at most max|upstream| * max(H, W) * 4 * max|value|^2
    terms = BATCH * VERTICES * 5 * len(SHAPES) * DIM
    side = max(max(h, w) for h, w in SHAPES)
    big = max(float(t.abs().max()) for t in (*make_inputs(torch.float64)[0],))
    big = max(big, 4.0)  # weights, globals and bias are of the same normal scale
    tolerance = terms * 30 * U64 * side * 4 * big**2
    torch.testing.assert_close(y_new, y_old, rtol=0, atol=tolerance)
    for new, old in zip(g_new, g_old, strict=True):
        assert new.shape == old.shape
        torch.testing.assert_close(new, old, rtol=0, atol=tolerance)
    # the location gradient is not trivially zero (some vertices lie inside the maps)
    assert g_new[len(SHAPES) + 2].abs().max() > 1e-3
