"""Training: the learned denoiser approaches the closed form; checkpoints resume exactly."""

import numpy as np
import pytest
import torch
from closed_forms import GaussianDenoiser

from tps_diffusion.core.denoiser import Denoiser, DenoiserConfig
from tps_diffusion.core.normalizer import Normalizer
from tps_diffusion.core.training import DiffusionModel, TrainConfig, train

SMALL = dict(hidden=64, depth=2, n_freq=2, lam_freq=4)


def gaussian_samples(n=4000, seed=0):
    return np.random.default_rng(seed).normal([1.0, -2.0], 0.5, size=(n, 2))


@pytest.mark.parametrize("architecture", ["mlp", "convex"])
def test_denoiser_learns_gaussian_posterior_mean(architecture):
    samples = gaussian_samples()
    model = train(samples, DenoiserConfig(dim=2, sigma_data=1.0, architecture=architecture, **SMALL),
                  TrainConfig(steps=800, batch_size=256, lr=3e-3, lam_min=-6, lam_max=6, lam_sampling="importance"),
                  progress=False, device="cpu")
    norm = model.normalizer
    # in model units the data are N((m - mean)/scale, (s/scale)^2)
    exact = GaussianDenoiser(norm.forward(np.array([1.0, -2.0])), 0.5 / norm.scale)
    torch.manual_seed(1)
    lam = torch.linspace(-4, 4, 200, dtype=torch.float64)
    x0 = torch.randn(200, 2, dtype=torch.float64) * 0.5 / norm.scale + exact.mean
    from tps_diffusion.core.schedule import add_noise
    x = add_noise(x0, lam)
    with torch.no_grad():
        learned = model.denoiser(x.float(), lam.float()).double()
    err = (learned - exact(x, lam)).norm(dim=-1)
    scale = (x0 - exact.mean).norm(dim=-1).mean()
    assert err.mean() < 0.1 * scale  # well below the spread of the data


def test_resume_reproduces_uninterrupted_training(tmp_path):
    samples = gaussian_samples(500)
    cfg = DenoiserConfig(dim=2, sigma_data=1.0, **SMALL)
    straight = train(samples, cfg, TrainConfig(steps=60, batch_size=64, checkpoint_every=30),
                     checkpoint=tmp_path / "a.pt", progress=False, device="cpu")
    train(samples, cfg, TrainConfig(steps=30, batch_size=64, checkpoint_every=30),
          checkpoint=tmp_path / "b.pt", progress=False, device="cpu")
    resumed = train(samples, cfg, TrainConfig(steps=60, batch_size=64, checkpoint_every=30),
                    checkpoint=tmp_path / "b.pt", resume=True, progress=False, device="cpu")
    for p, q in zip(straight.denoiser.parameters(), resumed.denoiser.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    loaded = DiffusionModel.load(tmp_path / "b.pt", device="cpu")
    ckpt = torch.load(tmp_path / "b.pt", weights_only=False)
    assert ckpt["step"] == 60 and ckpt["train_config"]["steps"] == 60
    assert set(ckpt["versions"]) >= {"tps_diffusion", "torch", "numpy", "python"}
    np.testing.assert_allclose(loaded.normalizer.mean, Normalizer.fit(samples).mean)
    x, lam = torch.randn(5, 2), torch.zeros(5)
    torch.testing.assert_close(loaded.denoiser(x, lam), resumed.denoiser(x, lam))


def test_checkpoint_errors(tmp_path):
    samples = gaussian_samples(300)
    path = tmp_path / "m.pt"
    train(samples, DenoiserConfig(dim=2, **SMALL), TrainConfig(steps=5, batch_size=32),
          checkpoint=path, progress=False, device="cpu")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        train(samples, DenoiserConfig(dim=2, **SMALL), TrainConfig(steps=5, batch_size=32),
              checkpoint=path, progress=False, device="cpu")
    with pytest.raises(ValueError, match="hidden=64, not 32"):
        train(samples, DenoiserConfig(dim=2, **{**SMALL, "hidden": 32}), TrainConfig(steps=10, batch_size=32),
              checkpoint=path, resume=True, progress=False, device="cpu")
    with pytest.raises(ValueError, match="lr=0.001, not 0.01"):
        train(samples, DenoiserConfig(dim=2, **SMALL), TrainConfig(steps=10, batch_size=32, lr=0.01),
              checkpoint=path, resume=True, progress=False, device="cpu")
    assert path.read_bytes() == before  # nothing lost
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable tps_diffusion checkpoint"):
        DiffusionModel.load(bad)
    with pytest.raises(FileNotFoundError, match="train a model first"):
        DiffusionModel.load(tmp_path / "missing.pt")


def test_bad_samples_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        train(np.array([[0.0, np.nan], [1.0, 2.0], [0.5, 0.5]]), progress=False)
    with pytest.raises(ValueError, match="2-D array"):
        train(np.zeros(10), progress=False)
    with pytest.raises(ValueError, match="unknown lam_sampling"):
        TrainConfig(lam_sampling="fancy")


def test_convex_denoiser_jacobian_is_symmetric_positive_semidefinite():
    """The convex architecture's Jacobian dD/dx is a Hessian of a convex function (plus a
    non-negative multiple of the identity): symmetric and PSD at any point and noise level,
    untrained or not; the free MLP has no such structure."""
    torch.manual_seed(0)
    den = Denoiser(DenoiserConfig(dim=6, architecture="convex", hidden=32, depth=3, sigma_data=0.3)).double()
    with torch.no_grad():  # a random (not just initial) convex network
        for p in den.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x = 3.0 * torch.randn(8, 6, dtype=torch.float64)
    lam = torch.linspace(-8.0, 8.0, 8, dtype=torch.float64)
    for i in range(8):
        jac = torch.func.jacrev(lambda v, i=i: den(v[None], lam[i:i + 1])[0])(x[i])
        assert torch.allclose(jac, jac.T, atol=1e-12)
        assert torch.linalg.eigvalsh(jac).min() >= -1e-12
    # the explicit gradient is the gradient of the potential: finite differences of D along a
    # line integrate to the potential difference, i.e. the Jacobian of D has zero curl (checked
    # above as symmetry) -- and torch's forward mode agrees with reverse mode
    v = torch.randn(6, dtype=torch.float64)
    _, jv = torch.func.jvp(lambda y: den(y[None], lam[:1])[0], (x[0],), (v,))
    jac0 = torch.func.jacrev(lambda y: den(y[None], lam[:1])[0])(x[0])
    assert torch.allclose(jv, jac0 @ v, atol=1e-12)


def test_convex_denoiser_refuses_periodic_inputs():
    with pytest.raises(ValueError, match="non-periodic"):
        DenoiserConfig(dim=2, periodic=[True, False], architecture="convex")
    with pytest.raises(ValueError, match="architecture"):
        DenoiserConfig(dim=2, architecture="resnet")
