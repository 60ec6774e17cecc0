"""Closed-form Feynman–Kac checks for every registry SDE solver and noise type, and the Itô/Stratonovich conversion.

Monte Carlo estimates must lie within 4 standard errors (plus a stated discretisation bound where a solver is not
exact) of the closed form; where a plausible mistake (σ instead of σ², a missing drift correction) would change the
answer, the test also asserts that the wrong value is many standard errors away.
"""

import math

import pytest
import torch

from nsde_coin import (
    DiagonalDiffusion,
    Diffusion,
    GeneralDiffusion,
    LinearDrift,
    ScalarDiffusion,
    StateDiagonalDiffusion,
    feynman_kac,
    list_solvers,
)

F64 = torch.float64


K_WAVE, SIGMA, T = 2.0, 0.5, 1.0
D = 2


def _const_diag_statedep(sigma: float) -> StateDiagonalDiffusion:
    """A "diagonal"-noise field (state-dependent code path) whose σ is the constant ``sigma``."""
    field = StateDiagonalDiffusion(D, width=4, sigma=sigma).double()
    with torch.no_grad():
        field.w2.zero_()
    return field


# noise type → a constant σ·I-marginal field of that torchsde noise type (each coordinate ~ x + σ W_T)
FIELDS = {
    "additive-scalar": lambda: ScalarDiffusion(D, SIGMA).double(),
    "additive-diagonal": lambda: DiagonalDiffusion(D, torch.full((D,), SIGMA, dtype=F64)),
    "diagonal": lambda: _const_diag_statedep(SIGMA),
    "general": lambda: GeneralDiffusion(D, SIGMA * torch.eye(D, dtype=F64), noise_type="general"),
    "scalar": lambda: GeneralDiffusion(D, torch.full((D, 1), SIGMA, dtype=F64), noise_type="scalar"),
}


def _cases():
    for key, make in FIELDS.items():
        noise_type = make().noise_type
        for info in list_solvers("sde", noise_type=noise_type):
            yield pytest.param(key, info.name, id=f"{key}-{info.name}")


@pytest.mark.parametrize("field_key,solver", list(_cases()))
def test_heat_semigroup_on_a_sine(field_key, solver):
    """v = 0, f(x) = sin(kx): u(x, T) = exp(−σ²k²T/2) sin(kx) per coordinate (every solver is exact in law here)."""
    diffusion = FIELDS[field_key]()
    x = torch.tensor([[math.pi / 4, 0.3]], dtype=F64)
    mean, se = feynman_kac(lambda z: torch.sin(K_WAVE * z), x, None, diffusion, T, samples=3000, steps=2,
                           solver=solver, seed=123)
    exact = math.exp(-SIGMA**2 * K_WAVE**2 * T / 2) * torch.sin(K_WAVE * x)
    wrong = math.exp(-SIGMA * K_WAVE**2 * T / 2) * torch.sin(K_WAVE * x)  # σ in place of σ²
    assert torch.all(se > 0)
    z = (mean - exact) / se
    assert z.abs().max() < 4, (solver, z)
    assert ((mean[0, 0] - wrong[0, 0]) / se[0, 0]).abs() > 12


@pytest.mark.parametrize("field_key,solver", list(_cases()))
def test_ornstein_uhlenbeck_mean(field_key, solver):
    """v = −θx, f(x) = x: E[X_T] = x e^{−θT}. Non-exact solvers carry a weak bias ≤ |(1 − θdt)^n − e^{−θT}|·|x|
    (Euler's, the largest of them) which is added to the 4-standard-error bound."""
    theta, steps = 1.0, 16
    diffusion = FIELDS[field_key]()
    drift = LinearDrift(-theta * torch.eye(D, dtype=F64))
    x = torch.tensor([[1.0, -0.5]], dtype=F64)
    mean, se = feynman_kac(lambda z: z, x, drift, diffusion, T, samples=3000, steps=steps, solver=solver, seed=7)
    exact = x * math.exp(-theta * T)
    bias = abs((1 - theta * T / steps) ** steps - math.exp(-theta * T)) * x.abs()
    assert torch.all((mean - exact).abs() < 4 * se + bias), (solver, mean, exact, se)
    assert torch.all((mean - x).abs() > 20 * se)  # the drift is not ignored


class GBMNoise(Diffusion):
    """σ(x) = s·x, diagonal noise (geometric Brownian motion), with its own closed-form Itô correction ½ s² x."""

    noise_type = "diagonal"
    state_dependent = True

    def __init__(self, s: float, dim: int = 1) -> None:
        super().__init__()
        self.s, self.dim, self.noise_dim = s, dim, dim

    def forward(self, t, x):
        return self.s * x


def test_ito_correction_autograd_matches_closed_forms():
    x = torch.randn(5, 3, dtype=F64)
    gbm = GBMNoise(0.7, 3)
    torch.testing.assert_close(gbm.ito_correction(0.0, x), 0.5 * 0.49 * x)
    field = StateDiagonalDiffusion(3, width=8).double()
    with torch.no_grad():
        field.w2.normal_(0, 0.5)
        field.wt.normal_(0, 0.5)
    t = torch.tensor(0.3, dtype=F64)
    torch.testing.assert_close(field.ito_correction(t, x), Diffusion.ito_correction(field, t, x))
    bounded = StateDiagonalDiffusion(3, width=8, sigma_max=0.9, sigma=0.3).double()
    with torch.no_grad():
        bounded.w2.normal_(0, 0.5)
    torch.testing.assert_close(bounded.ito_correction(t, x), Diffusion.ito_correction(bounded, t, x))
    # general noise: column-wise Jacobian-vector products; σ(x) = [[x1, 0], [x0, x1]] (d = m = 2)

    class Mat(Diffusion):
        noise_type, dim, noise_dim = "general", 2, 2

        def forward(self, t, z):
            zero = torch.zeros_like(z[:, 0])
            return torch.stack([torch.stack([z[:, 1], zero], -1), torch.stack([z[:, 0], z[:, 1]], -1)], -2)

    z = torch.randn(4, 2, dtype=F64)
    # c_i = ½ Σ_jk σ_kj ∂σ_ij/∂x_k: c_0 = ½ σ_10 = ½ x0; c_1 = ½ (σ_00 + σ_11) = ½ (x1 + x1)
    expect = 0.5 * torch.stack([z[:, 0], 2 * z[:, 1]], -1)
    torch.testing.assert_close(Mat().ito_correction(0.0, z), expect)


@pytest.mark.parametrize("solver", ["euler", "milstein", "srk", "heun", "midpoint", "euler_heun", "reversible_heun"])
def test_state_dependent_noise_same_expectation_for_ito_and_stratonovich_solvers(solver):
    """dX = s X dW (Itô): E[X_T] = x and E[X_T²] = x² e^{s²T}. Stratonovich solvers get v − ½ s² X.

    Without the conversion a Stratonovich solver would give E[X_T] = x e^{s²T/2} (13% high for s = 0.5): the test
    asserts that value is > 8 standard errors away.
    """
    s, x0 = 0.5, 1.0
    x = torch.full((1, 1), x0, dtype=F64)
    mean, se = feynman_kac(lambda z: torch.cat([z, z * z], 1), x, None, GBMNoise(s), T, samples=4000, steps=32,
                           solver=solver, seed=99)
    exact = torch.tensor([[x0, x0**2 * math.exp(s * s * T)]], dtype=F64)
    # weak bias of the second moment: Euler's E[X_T²] = x²(1 + s²dt)^n vs x² e^{s²T}: 0.0013 at 32 steps
    bias = torch.tensor([[0.0, 0.01]], dtype=F64)
    assert torch.all((mean - exact).abs() < 4 * se + bias), (solver, mean, exact, se)
    assert (mean[0, 0] - x0 * math.exp(s * s * T / 2)).abs() > 8 * se[0, 0]


def test_learned_diagonal_noise_agrees_across_ito_and_stratonovich_solvers_pathwise():
    """With the SAME Brownian path, Itô Euler, Itô Milstein and converted Stratonovich Heun/midpoint converge to
    the same Itô solution: their E[f(X_T)] agree far inside the Monte Carlo error; an unconverted Stratonovich
    solve (the model declared Stratonovich) differs by many standard errors."""
    torch.manual_seed(0)
    field = StateDiagonalDiffusion(2, width=8, sigma=0.6).double()
    with torch.no_grad():
        field.w2.normal_(0, 0.6)
    x = torch.tensor([[0.5, -1.0]], dtype=F64)
    f = torch.tanh
    out = {}
    for solver in ("euler", "milstein", "heun", "midpoint"):
        out[solver] = feynman_kac(f, x, None, field, T, samples=2000, steps=32, solver=solver, seed=5)
    ref, se = out["milstein"]
    for solver in ("euler", "heun", "midpoint"):
        assert ((out[solver][0] - ref).abs() < se).all(), (solver, out[solver][0], ref, se)
    unconverted, _ = feynman_kac(f, x, None, field, T, samples=2000, steps=32, solver="heun",
                                 sde_type="stratonovich", seed=5)
    assert ((unconverted - ref).abs() / se).max() > 5


def test_stratonovich_model_with_ito_solver_gets_the_reverse_correction():
    """dX = s X ∘dW (Stratonovich): E[X_T] = x e^{s²T/2}; Euler (Itô) must be given v + ½ s² X."""
    s = 0.5
    x = torch.ones(1, 1, dtype=F64)
    for solver in ("euler", "heun"):
        mean, se = feynman_kac(lambda z: z, x, None, GBMNoise(s), T, samples=4000, steps=32, solver=solver,
                               sde_type="stratonovich", seed=3)
        assert abs(float(mean) - math.exp(s * s * T / 2)) < 4 * float(se) + 0.01, (solver, mean)
        assert abs(float(mean) - 1.0) > 8 * float(se)
