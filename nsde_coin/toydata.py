"""The embedded data set of ``nsde-coin train``: interleaved 2-D spirals lifted to ``dim`` dimensions, no download.

Construction (all randomness from one ``torch.Generator`` seeded with ``seed``, so a seed fixes every tensor):

1. Latent points z ∈ R² on ``classes`` interleaved spiral arms: for class c and t ~ U(0, 1),
   radius r = radius·(0.15 + 0.85·t) and angle θ = 2π·turns·t + 2πc/classes,
   z = r·(cos θ, sin θ) + ``noise``·N(0, I₂).
2. A fixed random embedding x = z Qᵀ + ``noise``·N(0, I_dim), where Q (dim × 2) has orthonormal columns. The map is
   linear, so a linear classifier on x is exactly as weak as one on z (spirals are not linearly separable), while
   the orthonormal columns make ``Qᵀ x`` the 2-D projection used for plots.
3. A random split into train / test; then exactly ``round(label_noise · n_train)`` training labels are flipped to a
   different class chosen uniformly. Test labels stay clean, so test accuracy measures the true decision regions.

Units: z and x are dimensionless with |z| ≲ ``radius``; ``noise`` is a standard deviation in the same units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ToyData:
    """One draw of the embedded spirals.

    Attributes:
        x_train, x_test: (N, dim) float32 embedded inputs.
        y_train, y_test: (N,) int64 labels in [0, classes); ``y_train`` carries the label noise.
        z_train, z_test: (N, 2) float32 latent (noise-free-embedding) coordinates, for plots.
        y_train_clean: (N_train,) labels before flipping; ``flipped`` (N_train,) bool marks the flipped ones.
        embedding: (dim, 2) matrix Q with orthonormal columns; ``embed(z) = z @ Q.T``.
        classes, dim, seed: the parameters of the draw.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    z_train: torch.Tensor
    z_test: torch.Tensor
    y_train_clean: torch.Tensor
    flipped: torch.Tensor
    embedding: torch.Tensor
    classes: int
    dim: int
    seed: int

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent points (M, 2) to inputs (M, dim) with the data set's embedding (without noise)."""
        if z.ndim != 2 or z.shape[1] != 2:
            raise ValueError(f"z must have shape (M, 2), got {tuple(z.shape)}")
        return z.to(self.embedding.dtype) @ self.embedding.T

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection of inputs (M, dim) onto the latent plane, (M, 2)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (M, {self.dim}), got {tuple(x.shape)}")
        return x.to(self.embedding.dtype) @ self.embedding

    def summary(self) -> dict:
        """JSON-serialisable description of the draw."""
        return {
            "name": "embedded_spirals",
            "classes": self.classes,
            "dim": self.dim,
            "seed": self.seed,
            "n_train": int(self.y_train.numel()),
            "n_test": int(self.y_test.numel()),
            "label_noise_train": float(self.flipped.float().mean()) if self.flipped.numel() else 0.0,
        }


def _check(name: str, value, ok: bool, want: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is not valid; expected {want}")


def make_spirals(
    n: int = 2400,
    *,
    dim: int = 12,
    classes: int = 3,
    turns: float = 1.0,
    radius: float = 2.0,
    noise: float = 0.08,
    label_noise: float = 0.08,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> ToyData:
    """Draw the embedded spiral data set (deterministic for a given ``seed``).

    Args:
        n: total number of points (train + test), split evenly over the classes (remainder to the first ones).
        dim: ambient dimension (≥ 2) of the embedded inputs.
        classes: number of spiral arms / classes (≥ 2).
        turns: revolutions of each arm (> 0); 1.0 makes the classes clearly non-linearly-separable.
        radius: outer radius of the arms (> 0); 2 puts the data where a tanh drift network is not yet linear.
        noise: std of the Gaussian jitter added in the latent plane and again in the ambient space (≥ 0).
        label_noise: fraction of *training* labels flipped to another class, in [0, 0.5).
        test_fraction: fraction of points held out for the test split, in (0, 1).
        seed: seed of the generator that fixes every random choice.

    Returns:
        A :class:`ToyData`.
    """
    _check("classes", classes, isinstance(classes, int) and classes >= 2, "an int >= 2")
    _check("n", n, isinstance(n, int) and n >= 4 * classes, f"an int >= 4*classes = {4 * classes}")
    _check("dim", dim, isinstance(dim, int) and dim >= 2, "an int >= 2")
    _check("turns", turns, isinstance(turns, (int, float)) and math.isfinite(turns) and turns > 0, "a float > 0")
    _check("radius", radius, isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0,
           "a float > 0")
    _check("noise", noise, isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0, "a float >= 0")
    _check("label_noise", label_noise, isinstance(label_noise, (int, float)) and 0 <= label_noise < 0.5,
           "a float in [0, 0.5)")
    _check("test_fraction", test_fraction, isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1,
           "a float in (0, 1)")
    _check("seed", seed, isinstance(seed, int) and not isinstance(seed, bool), "an int")

    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    counts = [n // classes + (1 if c < n % classes else 0) for c in range(classes)]
    labels = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(counts)])
    t = torch.rand(n, generator=g, dtype=dt)
    r = radius * (0.15 + 0.85 * t)
    angle = 2 * math.pi * turns * t + 2 * math.pi * labels.to(dt) / classes
    z = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
    z = z + noise * torch.randn(n, 2, generator=g, dtype=dt)

    q, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g, dtype=dt))
    x = z @ q.T + noise * torch.randn(n, dim, generator=g, dtype=dt)

    perm = torch.randperm(n, generator=g)
    n_test = max(classes, round(test_fraction * n))
    test, train = perm[:n_test], perm[n_test:]
    y_clean = labels[train]
    n_flip = round(label_noise * train.numel())
    flip_idx = torch.randperm(train.numel(), generator=g)[:n_flip]
    shift = torch.randint(1, classes, (n_flip,), generator=g)
    y_noisy = y_clean.clone()
    y_noisy[flip_idx] = (y_clean[flip_idx] + shift) % classes
    flipped = torch.zeros(train.numel(), dtype=torch.bool)
    flipped[flip_idx] = True

    f32 = torch.float32
    return ToyData(
        x_train=x[train].to(f32), y_train=y_noisy, x_test=x[test].to(f32), y_test=labels[test],
        z_train=z[train].to(f32), z_test=z[test].to(f32), y_train_clean=y_clean, flipped=flipped,
        embedding=q.to(f32), classes=classes, dim=dim, seed=seed,
    )
