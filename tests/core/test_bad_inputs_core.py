"""The fault table of the core SDE/ODE API (issue 9 §2): each row is a call and what it must do — raise one
exception type whose one-line message names the listed words, or return the correct result. Every row failed on
main before this table (a silent broadcast, a NaN, a bare torch error, or an error only at the first forward).

Rows are grouped: wrong field shapes (ODE fixed/adaptive, SDE every noise type, the adjoint passes), non-finite
values, dtype mismatches, and ConvectionDiffusionNet arguments checked at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import pytest
import torch
from torch import Tensor, nn

from nsde_coin import (
    ConvectionDiffusionNet,
    FixedGridBrownian,
    MLPDrift,
    ScalarDiffusion,
    feynman_kac,
)
from nsde_coin.errors import NonFiniteError
from nsde_coin.fields import Diffusion

D = 4
X = torch.ones(2, D)
F64 = torch.float64


def _late(t: Any) -> bool:
    """True after t = 0.6 on [0, 1]: fields that go wrong only there slip past torchsde's t0 probe."""
    return float(t) > 0.6


class LateDiagonal(Diffusion):
    """State-dependent diagonal sigma of the right shape (B, d) up to t = 0.6 and (B, 1) after it."""

    noise_type, noise_dim, dim = "diagonal", D, D

    def forward(self, t: Any, x: Tensor) -> Tensor:
        s = 0.1 * (1.0 + 0.1 * torch.tanh(x))
        return s[:, :1] if _late(t) else s


class LateMatrix(Diffusion):
    """Constant sigma (B, d, m) of ``noise_type`` up to t = 0.6, then (B, 1, m) — broadcast into (B, d) by g·dW."""

    dim = D

    def __init__(self, noise_type: str, m: int) -> None:
        super().__init__()
        self.noise_type, self.noise_dim, self.state_dependent = noise_type, m, noise_type != "additive"

    def forward(self, t: Any, x: Tensor) -> Tensor:
        s = 0.1 * torch.ones(x.shape[0], D, self.noise_dim, dtype=x.dtype) + 0.0 * x.unsqueeze(-1)
        return s[:, :1] if _late(t) else s


class ConstantButStateDependent(Diffusion):
    """sigma = 0.3 I that does not depend on x, but leaves ``state_dependent`` at its default True."""

    noise_type, noise_dim, dim = "diagonal", D, D

    def forward(self, t: Any, x: Tensor) -> Tensor:
        return torch.full_like(x, 0.3)


class AdjointOnlyBadDrift(nn.Module):
    """-x in the forward solve (run under no_grad by the adjoint methods), (B, 1) on the adjoint pass."""

    def forward(self, t: Any, x: Tensor) -> Tensor:
        return -x.sum(1, keepdim=True) if torch.is_grad_enabled() else -x


class AdjointOnlyBadDiffusion(LateDiagonal):
    """Diagonal sigma of shape (B, d) in the forward solve, (B, 1) on the adjoint pass."""

    def forward(self, t: Any, x: Tensor) -> Tensor:
        s = 0.1 * (1.0 + 0.1 * torch.tanh(x))
        return s[:, :1] if torch.is_grad_enabled() else s


def _sum_drift(t: Any, z: Tensor) -> Tensor:
    return z.sum(1, keepdim=True)


def _late_drift(t: Any, z: Tensor) -> Tensor:
    return -z.sum(1, keepdim=True) if _late(t) else -z


def _ode(drift: Callable[..., Tensor], solver: str = "euler", steps: int = 1) -> Callable[[], Any]:
    return lambda: feynman_kac(lambda z: z, X, drift, None, T=1.0, steps=steps, solver=solver)


def _sde(drift: Any, diffusion: Any, solver: str = "euler", **kw: Any) -> Callable[[], Any]:
    return lambda: feynman_kac(lambda z: z, X, drift, diffusion, T=1.0, steps=4, samples=3, seed=0, solver=solver,
                               **kw)


def _adjoint(drift: Any, diffusion: Any, solver: str) -> Callable[[], Any]:
    def call() -> None:
        x = X.clone().requires_grad_(True)
        mean, _ = feynman_kac(lambda z: z, x, drift, diffusion, T=1.0, steps=4, samples=3, seed=0, solver=solver,
                              grad_mode="adjoint")
        mean.sum().backward()
    return call


def _net(**kw: Any) -> ConvectionDiffusionNet:
    args: dict[str, Any] = dict(base=nn.Linear(D, 3), drift=MLPDrift(D, width=8), diffusion=ScalarDiffusion(D, 0.1),
                                steps=4, samples=2, seed=0)
    args.update(kw)
    return ConvectionDiffusionNet(**args)


class NaNBase(nn.Module):
    def forward(self, z: Tensor) -> Tensor:
        return torch.log(z - 10.0)  # log of a negative number: NaN on every finite state near x = 1


def _unbiased_mean() -> bool:
    """A sigma that ignores x but claims state dependence, integrated by a Stratonovich solver (heun): the Ito
    correction is 0, so E[X_T] = x. 4000 paths, sigma sqrt(T) = 0.3: SE = 0.0048; allow 5 SE (measured: 1.54 SE
    at most, the same on the generic kernel path; the sample is fixed by seed=1)."""
    mean, se = feynman_kac(lambda z: z, X, None, ConstantButStateDependent(), T=1.0, steps=4, samples=4000, seed=1,
                           solver="heun")
    return bool(((mean - X).abs() <= 5 * se).all()) and float(se.max()) < 0.01


# (id, call, exception type or None for "returns True", words the one-line message must contain)
ROWS: list[tuple[str, Callable[[], Any], Optional[type], tuple[str, ...]]] = [
    # --- wrong shapes: ODE (torchdiffeq), fixed and adaptive steps
    ("ode-drift-(B,1)-euler", _ode(_sum_drift), ValueError, ("drift", "t=0", "(2, 1)", "expected (2, 4)")),
    ("ode-drift-(1,d)-euler", _ode(lambda t, z: z.sum(0, keepdim=True)), ValueError,
     ("drift", "(1, 4)", "expected (2, 4)")),
    ("ode-drift-(B,1)-rk4", _ode(_sum_drift, "rk4"), ValueError, ("drift", "(2, 1)", "(2, 4)")),
    ("ode-drift-(B,1)-dopri5", _ode(_sum_drift, "dopri5"), ValueError, ("drift", "(2, 1)", "(2, 4)")),
    ("ode-drift-(B,1)-late-midpoint", _ode(_late_drift, "midpoint", steps=4), ValueError,
     ("drift", "t=0.625", "(2, 1)", "(2, 4)")),
    ("ode-drift-(B,1)-adjoint-pass", _adjoint(AdjointOnlyBadDrift(), None, "euler"), ValueError,
     ("drift", "(2, 1)", "(2, 4)")),
    ("net-ode-drift-(B,1)", lambda: _net(drift=lambda t, z: z.sum(1, keepdim=True), diffusion=None)(X), ValueError,
     ("drift", "(2, 1)", "(2, 4)")),
    # --- wrong shapes: SDE (torchsde), after torchsde's t0 probe
    ("sde-drift-(B,1)-late-euler", _sde(_late_drift, ScalarDiffusion(D, 0.1)), ValueError,
     ("drift", "t=0.75", "(6, 1)", "(6, 4)")),
    ("net-sde-drift-(B,1)-late", lambda: _net(drift=_late_drift)(X), ValueError, ("drift", "(4, 1)", "(4, 4)")),
    *[(f"sde-diagonal-(B,1)-late-{s}", _sde(None, LateDiagonal(), s), ValueError,
       ("diffusion", "diagonal", "(6, 1)", "expected (6, 4)")) for s in ("euler", "milstein", "srk", "heun")],
    ("sde-general-(B,1,m)-late", _sde(None, LateMatrix("general", 3)), ValueError,
     ("diffusion", "general", "(6, 1, 3)", "(6, 4, 3)")),
    ("sde-additive-(B,1,m)-late", _sde(None, LateMatrix("additive", 3)), ValueError,
     ("diffusion", "additive", "(6, 1, 3)", "(6, 4, 3)")),
    ("sde-scalar-(B,1,1)-late", _sde(None, LateMatrix("scalar", 1)), ValueError,
     ("diffusion", "scalar", "(6, 1, 1)", "(6, 4, 1)")),
    ("sde-drift-adjoint-pass", _adjoint(AdjointOnlyBadDrift(), ScalarDiffusion(D, 0.1), "euler"), ValueError,
     ("drift", "(6, 1)", "(6, 4)")),
    ("sde-diffusion-adjoint-pass", _adjoint(None, AdjointOnlyBadDiffusion(), "euler"), ValueError,
     ("diffusion", "(6, 1)", "(6, 4)")),
    # --- a user-supplied Brownian motion that does not fit the solve (6 = B*samples paths, 4 channels)
    ("brownian-batch-mismatch", _sde(None, ScalarDiffusion(D, 0.1), brownian=FixedGridBrownian(0, 1, (3, D), steps=4)),
     ValueError, ("brownian", "(3, 4)", "(6, 4)")),
    ("brownian-channels-mismatch",
     _sde(None, ScalarDiffusion(D, 0.1), brownian=FixedGridBrownian(0, 1, (6, 3), steps=4)), ValueError,
     ("brownian", "(6, 3)", "(6, 4)", "noise_dim")),
    ("brownian-float64-on-float32-x",
     _sde(None, ScalarDiffusion(D, 0.1), brownian=FixedGridBrownian(0, 1, (6, D), steps=4, dtype=F64)), TypeError,
     ("brownian", "torch.float64", "torch.float32")),
    # --- non-finite values
    ("base-f-returns-nan",
     lambda: feynman_kac(NaNBase(), X, None, ScalarDiffusion(D, 0.1), T=1.0, steps=4, samples=3, seed=0),
     NonFiniteError, ("base model f", "NaN")),
    ("net-base-returns-nan", lambda: _net(base=NaNBase(), diffusion=None)(X), NonFiniteError, ("base model f",)),
    ("diverging-states", _ode(lambda t, z: z * 1e30, steps=2), NonFiniteError, ("X_T", "steps")),
    # --- dtypes
    ("net-float32-on-float64-x", lambda: _net()(X.double()), TypeError,
     ("drift", "torch.float64", "torch.float32", "double()", "x.float()")),
    ("float32-base-on-float64-fields",
     lambda: feynman_kac(nn.Linear(D, 2), X.double(), None, ScalarDiffusion(D, 0.1), T=1.0, steps=2, seed=0),
     TypeError, ("base model f", "torch.float64", "torch.float32")),
    ("float32-drift-on-float64-x-dopri5",
     lambda: feynman_kac(lambda z: z, X.double(), MLPDrift(D, width=8), None, T=1.0, solver="dopri5"),
     TypeError, ("drift", "torch.float64", "torch.float32")),
    # --- ConvectionDiffusionNet: every argument checked at construction
    ("net-sde_type-Ito", lambda: _net(sde_type="Ito"), ValueError, ("sde_type='Ito'", "ito, stratonovich")),
    ("net-ode-sde_type-Ito", lambda: _net(sde_type="Ito", diffusion=None), ValueError, ("sde_type='Ito'",)),
    ("net-unknown-keyword", lambda: _net(adaptiv=True), TypeError, ("'adaptiv'", "rtol", "adaptive")),
    ("net-rtol-negative", lambda: _net(rtol=-1.0), ValueError, ("rtol=-1.0",)),
    ("net-atol-str", lambda: _net(atol="1e-4"), ValueError, ("atol='1e-4'",)),
    ("net-adaptive-str", lambda: _net(adaptive="yes"), TypeError, ("adaptive", "'yes'")),
    ("net-brownian-not-bm", lambda: _net(brownian=5), TypeError, ("brownian", "int")),
    ("net-adjoint_params-not-tensors", lambda: _net(grad_mode="adjoint", adjoint_params=[1.0]), TypeError,
     ("adjoint_params",)),
    ("net-drift-not-callable", lambda: _net(drift=torch.zeros(D)), TypeError, ("drift", "callable", "Tensor")),
    ("net-diffusion-no-noise_type", lambda: _net(diffusion=lambda t, x: x), TypeError, ("diffusion", "noise_type")),
    ("net-dims-disagree", lambda: _net(drift=MLPDrift(3)), ValueError, ("dim=3", "dim=4")),
    # --- correct result where main crashed
    ("sigma-ignores-x-heun", _unbiased_mean, None, ()),
]


@pytest.mark.parametrize("call,err,words", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_fault_table_row(call: Callable[[], Any], err: Optional[type], words: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    if err is None:
        assert call() is True
        return
    with pytest.raises(err) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg, msg
    missing = [w for w in words if w not in msg]
    assert not missing, f"{missing} not in: {msg}"


@pytest.mark.parametrize("values, finite", [
    ([1.0, -2.0, 0.0], True),
    ([3e38, 3e38, -1.0], True),  # finite entries whose float32 sum overflows: the entry-wise test decides
    ([1.0, float("nan")], False),
    ([float("inf"), -float("inf")], False),  # their sum is NaN: also caught
    ([-float("inf"), 1.0], False),
])
def test_all_finite_agrees_with_the_entrywise_test(values, finite) -> None:
    from nsde_coin._checks import all_finite

    t = torch.tensor(values)
    assert bool(torch.isfinite(t).all()) is finite
    assert all_finite(t) is finite and all_finite(t.double()) is finite
    assert all_finite(torch.arange(3)) is True  # integers are always finite


@pytest.mark.parametrize("values, finite", [([1 + 2j, -1j], True), ([complex(float("nan"), 0.0), 1j], False),
                                            ([complex(0.0, float("inf"))], False), ([], True)])
def test_all_finite_on_complex_tensors(values, finite) -> None:
    from nsde_coin._checks import all_finite

    t = torch.tensor(values, dtype=torch.complex64)
    assert bool(torch.isfinite(t).all()) is finite
    assert all_finite(t) is finite and all_finite(t.to(torch.complex128)) is finite
