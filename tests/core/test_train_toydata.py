"""The embedded spiral data set: deterministic per seed, shapes, exact label-noise rate, orthonormal embedding."""

import pytest
import torch

from nsde_coin.toydata import make_spirals


def test_deterministic_per_seed():
    a, b, c = make_spirals(300, seed=3), make_spirals(300, seed=3), make_spirals(300, seed=4)
    for key in ("x_train", "y_train", "x_test", "y_test", "z_train", "z_test", "flipped", "embedding"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.embedding, c.embedding)


def test_shapes_dtypes_and_balance():
    d = make_spirals(1000, dim=9, classes=4, test_fraction=0.2, seed=0)
    assert d.x_train.shape == (800, 9) and d.x_test.shape == (200, 9)
    assert d.z_train.shape == (800, 2) and d.z_test.shape == (200, 2)
    assert d.y_train.shape == (800,) and d.y_test.shape == (200,)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    counts = torch.bincount(torch.cat([d.y_train_clean, d.y_test]), minlength=4)
    assert counts.tolist() == [250, 250, 250, 250]
    assert int(d.y_train.min()) >= 0 and int(d.y_train.max()) <= 3
    assert d.summary()["n_train"] == 800 and d.summary()["classes"] == 4


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1])
def test_label_noise_rate_is_exact_and_train_only(rate):
    d = make_spirals(1200, label_noise=rate, seed=1)
    n_train = d.y_train.numel()
    assert int(d.flipped.sum()) == round(rate * n_train)
    # a flipped label always differs from the clean one; the rest are untouched
    assert torch.equal(d.y_train != d.y_train_clean, d.flipped)
    assert d.summary()["label_noise_train"] == pytest.approx(round(rate * n_train) / n_train)


def test_flips_spread_over_all_other_classes():
    d = make_spirals(3000, classes=3, label_noise=0.1, seed=2)
    shift = (d.y_train - d.y_train_clean)[d.flipped] % 3
    counts = torch.bincount(shift, minlength=3)
    assert counts[0] == 0
    # 225 flips split between shift 1 and 2: binomial(225, 1/2) has std 7.5; allow 4 std
    assert abs(int(counts[1]) - int(counts[2])) < 2 * 4 * 7.5


def test_embedding_orthonormal_and_projection_recovers_latent():
    d = make_spirals(600, dim=12, noise=0.0, seed=0)
    q = d.embedding
    assert torch.allclose(q.T @ q, torch.eye(2), atol=1e-6)
    # with noise = 0 the data are exactly the embedded latent points and projecting gives them back
    assert torch.allclose(d.x_train, d.embed(d.z_train), atol=1e-6)
    assert torch.allclose(d.project(d.x_test), d.z_test, atol=1e-6)


def test_noise_level_is_as_specified():
    d = make_spirals(4000, dim=12, noise=0.05, seed=0)
    resid = d.x_train - d.embed(d.z_train)  # the ambient noise only
    assert resid.std().item() == pytest.approx(0.05, rel=0.03)


@pytest.mark.parametrize("kwargs, word", [
    ({"n": 5}, "n=5"), ({"dim": 1}, "dim=1"), ({"classes": 1}, "classes=1"), ({"label_noise": 0.5}, "label_noise"),
    ({"noise": -0.1}, "noise=-0.1"), ({"test_fraction": 1.0}, "test_fraction"), ({"turns": 0}, "turns=0"),
])
def test_bad_arguments_name_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_spirals(**{"n": 300, **kwargs})
