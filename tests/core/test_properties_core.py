"""Property-based tests (hypothesis) of FixedGridBrownian: a path, not a bag of samples.

On random grids (t0, step, number of steps), shapes, seeds, dtypes and Lévy-area modes, for any grid points
s ≤ t ≤ u of a query:

* increments are additive, W(s, u) = W(s, t) + W(t, u), and so are the Lévy areas by Chen's relations
  (U(s, u) = U(s, t) + (u − t)·W(s, t) + U(t, u); A(s, u) = A(s, t) + A(t, u) + ½(W(s,t)⊗W(t,u) − W(t,u)⊗W(s,t)));
* the path is a pure function of the seed: repeated queries, queries in another order, other query mixes in between
  and a fresh object with the same seed give bit-identical answers; the Lévy-area mode does not change W;
* W(t) is W(t0, t), W(t, t) = 0, and A is skew-symmetric.

Runs under the "ci" hypothesis profile of tests/conftest.py (derandomised, bounded examples).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nsde_coin.brownian import FixedGridBrownian

LEVY = st.sampled_from([None, "space-time", "davie", "foster"])
# Rounding of a sum of ≤ 40 increments in another association: ≤ 40·eps·max|partial sum| (measured ≤ 3 ulp of the
# largest entry); allowed 8·(number of steps)·eps of max(1, |entries|), a margin of ≥ 8x.
EPS = {torch.float64: torch.finfo(torch.float64).eps, torch.float32: torch.finfo(torch.float32).eps}


@dataclass
class Grid:
    t0: float
    dt: float
    steps: int
    size: tuple[int, int]
    seed: int
    dtype: torch.dtype
    levy: object

    def bm(self, **kw) -> FixedGridBrownian:
        args = dict(t0=self.t0, t1=self.t0 + self.steps * self.dt, size=self.size, steps=self.steps,
                    seed=self.seed, dtype=self.dtype, levy_area=self.levy)
        args.update(kw)
        return FixedGridBrownian(**args)

    def time(self, k: int) -> float:
        return self.t0 + k * self.dt


@st.composite
def grids(draw, levy=LEVY) -> Grid:
    return Grid(t0=draw(st.floats(-10.0, 10.0)), dt=draw(st.floats(1e-3, 2.0)), steps=draw(st.integers(1, 40)),
                size=(draw(st.integers(1, 4)), draw(st.integers(1, 3))), seed=draw(st.integers(0, 2**63 - 1)),
                dtype=draw(st.sampled_from([torch.float64, torch.float32])), levy=draw(levy))


@st.composite
def splits(draw) -> tuple[Grid, int, int, int]:
    """A grid and three grid indices a ≤ b ≤ c (a query (a, c) and a split point b, possibly at an end)."""
    g = draw(grids())
    a, b, c = sorted(draw(st.lists(st.integers(0, g.steps), min_size=3, max_size=3)))
    return g, a, b, c


def _close(x: torch.Tensor, y: torch.Tensor, nsteps: int) -> None:
    scale = max(1.0, float(x.abs().max()), float(y.abs().max()))
    torch.testing.assert_close(x, y, rtol=0, atol=8 * max(nsteps, 1) * EPS[x.dtype] * scale)


@given(split=splits())
def test_increments_and_levy_areas_are_additive_over_any_split(split):
    g, a, b, c = split
    bm = g.bm()
    ta, tb, tc = g.time(a), g.time(b), g.time(c)
    want_u = g.levy is not None
    want_a = g.levy in ("davie", "foster")

    def query(s, t):
        out = bm(s, t, return_U=want_u, return_A=want_a)
        return out if isinstance(out, tuple) else (out,)

    whole, left, right = query(ta, tc), query(ta, tb), query(tb, tc)
    _close(whole[0], left[0] + right[0], c - a)  # W(s, u) = W(s, t) + W(t, u)
    if want_u:
        _close(whole[1], left[1] + (tc - tb) * left[0] + right[1], c - a)
    if want_a:
        w1, w2 = left[0], right[0]
        chen = left[-1] + right[-1] + 0.5 * (w1.unsqueeze(-1) * w2.unsqueeze(-2) - w2.unsqueeze(-1) * w1.unsqueeze(-2))
        _close(whole[-1], chen, c - a)
        assert torch.equal(whole[-1], -whole[-1].transpose(-1, -2))  # skew-symmetric, exactly
    assert whole[0].shape == torch.Size(g.size) and whole[0].dtype == g.dtype


@given(split=splits(), others=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=6))
def test_the_path_is_a_pure_function_of_the_seed(split, others):
    g, a, b, c = split
    bm = g.bm()
    ta, tc = g.time(a), g.time(c)
    first = bm(ta, tc).clone()
    for i, j in others:  # any other queries in between (a different step is cached afterwards)
        i, j = sorted((min(i, g.steps), min(j, g.steps)))
        bm(g.time(i), g.time(j))
    assert torch.equal(bm(ta, tc), first)  # the same query again
    assert torch.equal(g.bm()(ta, tc), first)  # a fresh object with the same seed
    for levy in ("space-time", "foster"):  # the Lévy-area mode draws more numbers per step but the same W
        assert torch.equal(g.bm(levy_area=levy)(ta, tc, return_U=True)[0], first)
    assert torch.equal(bm(tc), bm(g.t0, tc))  # W(t) is W(t0, t)
    assert torch.equal(bm(ta, ta), torch.zeros(g.size, dtype=g.dtype))
    if a < c:  # and a different seed is a different path
        assert not torch.equal(g.bm(seed=g.seed ^ 1)(ta, tc), first)


@given(split=splits())
def test_step_increments_sum_to_the_query(split):
    g, a, _, c = split
    bm = g.bm()
    steps = [bm(g.time(k), g.time(k + 1)) for k in range(a, c)]
    total = sum(steps, torch.zeros(g.size, dtype=g.dtype))
    _close(bm(g.time(a), g.time(c)), total, c - a)


@pytest.mark.parametrize("off", [0.3, 0.5])
@given(g=grids(levy=st.just(None)), k=st.integers(0, 39))
def test_off_grid_queries_are_refused(off, g, k):
    k = min(k, g.steps - 1)
    with pytest.raises(ValueError, match="not a point of the grid"):
        g.bm()(g.time(k), g.t0 + (k + off) * g.dt)
