"""Adversarial and feature-matching losses against hand-computed values."""

import numpy as np
import pytest

from vsgan.models import losses


def _outputs(values_per_scale):
    """Discriminator outputs: per scale, [feature, logits]."""
    return [
        [np.full((1, 2, 2, 1), f, "float32"), np.full((1, 2, 2, 1), logit, "float32")]
        for f, logit in values_per_scale
    ]


def test_lsgan_targets_one_for_real_zero_for_fake_summed_over_scales():
    real, fake = _outputs([(0, 0.5), (0, 1.0)]), _outputs([(0, 0.25), (0, 0.0)])
    d = float(losses.discriminator_loss(real, fake, "lsgan"))
    assert d == pytest.approx(0.5 * ((0.25 + 0.0625) + (0.0 + 0.0)))
    g = float(losses.generator_adversarial_loss(fake, "lsgan"))
    assert g == pytest.approx(0.5625 + 1.0)


def test_hinge_and_bce_losses():
    real, fake = _outputs([(0, 2.0)]), _outputs([(0, -0.5)])
    assert float(losses.discriminator_loss(real, fake, "hinge")) == pytest.approx(0.5 * 0.5)
    assert float(losses.generator_adversarial_loss(fake, "hinge")) == pytest.approx(0.5)
    softplus = lambda z: np.log1p(np.exp(z))  # noqa: E731
    assert float(losses.discriminator_loss(real, fake, "bce")) == pytest.approx(
        0.5 * (softplus(-2.0) + softplus(-0.5)), rel=1e-5
    )
    assert float(losses.generator_adversarial_loss(fake, "bce")) == pytest.approx(
        softplus(0.5), rel=1e-5
    )


def test_feature_matching_uses_the_original_weights_and_skips_logits():
    real, fake = _outputs([(1.0, 9.0), (2.0, 9.0)]), _outputs([(1.5, -9.0), (1.0, -9.0)])
    # lambda 10 * 4 / (n_layers + 1) / num_d with n_layers 3, num_d 2: 5 per layer.
    got = float(losses.feature_matching_loss(real, fake, n_layers=3, weight=10.0))
    assert got == pytest.approx(5.0 * (0.5 + 1.0))


def test_unknown_gan_loss_is_refused():
    with pytest.raises(ValueError, match="lsgan"):
        losses.discriminator_loss([], [], "wasserstein")
