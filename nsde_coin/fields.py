"""Drift v(x, t) and diffusion σ(x, t) fields of the Feynman–Kac SDE dX = v dt + σ dW (re-exported here).

Every field is an ``nn.Module`` with ``forward(t, x)``; ``x`` has shape (B, d) and ``t`` is a Python float or a
0-dim tensor (time, in the same units as the horizon ``T``). The drifts live in :mod:`nsde_coin.drifts`, the constant
diffusions and :func:`~nsde_coin.diffusions.as_diffusion` in :mod:`nsde_coin.diffusions`, the learned
state-dependent one in :mod:`nsde_coin.state_diffusion`; ``from nsde_coin.fields import ...`` keeps working.

Drifts return v(x, t) with shape (B, d): :class:`MLPDrift` (the learned convection of a ResNet), :class:`LinearDrift`
(v = A x + b, e.g. Ornstein–Uhlenbeck) and :class:`ZeroDrift`.

Diffusion constructors share one pattern, ``(dim, sigma, ...)`` with sigma a float or a tensor:
``ScalarDiffusion(d, 0.3)``, ``DiagonalDiffusion(d, 0.3)`` or ``DiagonalDiffusion(d, sigma_vector)``,
``StateDiagonalDiffusion(d, sigma=0.1)``, ``GeneralDiffusion(d, matrix)`` or ``GeneralDiffusion(d, noise_dim=m)``.

Diffusions follow torchsde's layout: for ``noise_type == "diagonal"`` ``forward`` returns the diagonal σ_i(x, t) with
shape (B, d) (and σ_i may depend on x_i only — torchsde's diagonal/commutative-noise convention, which Milstein and
the Itô–Stratonovich correction rely on); for every other noise type it returns the matrix σ(x, t) with shape
(B, d, m), m = ``noise_dim`` Brownian motions. Besides ``forward`` each diffusion has

* ``noise_type`` — the cheapest torchsde noise type that is exact for the field:
  constant fields (:class:`ScalarDiffusion` σ·I, :class:`DiagonalDiffusion` diag(σ), :class:`GeneralDiffusion`) are
  ``"additive"`` (σ independent of x; Euler is then strong order 1 and srk uses the two-stage SRA1 scheme);
  :class:`StateDiagonalDiffusion` is ``"diagonal"``. torchsde's ``"scalar"`` means ONE Brownian motion shared by
  all coordinates (σ of shape (B, d, 1)), which is not σ·I; :class:`GeneralDiffusion` can be asked for it.
* ``noise_dim`` — m; ``dim`` — d (``None`` when any d is accepted);
* ``is_zero`` — True only for :class:`ZeroDiffusion` or a constant, non-learnable σ = 0 (the ODE limit);
* ``state_dependent`` — False when σ does not depend on x (then the Itô–Stratonovich correction vanishes);
* ``prod(t, x, v)`` — σ(x, t) applied to Brownian increments v of shape (B, m), giving (B, d) (fast paths);
* ``ito_correction(t, x)`` — c_i = ½ Σ_{j,k} σ_kj ∂σ_ij/∂x_k, shape (B, d): Stratonovich drift = Itô drift − c.
* ``diagonal(t, x)`` — only on the constant diagonal fields (:class:`ScalarDiffusion`, :class:`DiagonalDiffusion`):
  σ's diagonal, (B, d). Solvers whose additive-noise path multiplies the dense (B, d, d) matrix every step
  (reversible_heun and its adjoint) are handed this diagonal view instead — the same σ, so the same numbers.
* ``sigma_and_slope(t, x)`` — only on :class:`StateDiagonalDiffusion`: σ and ∂σ_i/∂x_i in closed form, which
  gradient-free Milstein solves use instead of a vjp through the network.

Learnable positive parameters are stored as the inverse softplus of σ, so σ = softplus(raw) > 0 stays positive
under any optimiser step.
"""

from nsde_coin.diffusions import (
    DiagonalDiffusion,
    Diffusion,
    GeneralDiffusion,
    ScalarDiffusion,
    ZeroDiffusion,
    as_diffusion,
)
from nsde_coin.drifts import ACTIVATIONS, LinearDrift, MLPDrift, ZeroDrift
from nsde_coin.state_diffusion import SLOPE_BLOCK, StateDiagonalDiffusion

__all__ = ["ACTIVATIONS", "SLOPE_BLOCK", "DiagonalDiffusion", "Diffusion", "GeneralDiffusion", "LinearDrift",
           "MLPDrift", "ScalarDiffusion", "StateDiagonalDiffusion", "ZeroDiffusion", "ZeroDrift", "as_diffusion"]
