"""Denoisers with closed forms (Gaussian data) for the tests: exact posterior means to check the geometry against."""

import torch

from tps_diffusion.core.schedule import alpha_sigma


class GaussianDenoiser(torch.nn.Module):
    """Exact posterior mean for data ``x0 ~ N(mean, s^2 I)`` (no parameters)."""

    def __init__(self, mean, s):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.s = float(s)

    def posterior(self, x, lam):
        """Posterior mean ``(M, D)`` and isotropic variance ``(M,)``."""
        alpha, sigma = alpha_sigma(lam)
        var = 1.0 / (1.0 / self.s**2 + alpha**2 / sigma**2)
        mean = var[:, None] * (self.mean.to(x) / self.s**2 + (alpha / sigma**2)[:, None] * x)
        return mean, var

    def forward(self, x, lam):
        return self.posterior(x, lam)[0]


class GaussianMixtureDenoiser(torch.nn.Module):
    """Exact posterior mean for an equal-weight mixture of isotropic Gaussians ``N(m_k, s^2 I)``."""

    def __init__(self, means, s):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float64))
        self.s = float(s)

    def forward(self, x, lam):
        alpha, sigma = alpha_sigma(lam)
        a, sg = alpha[:, None], sigma[:, None]
        m = self.means.to(x)
        var_x = a**2 * self.s**2 + sg**2  # marginal variance of x under component k
        logw = -((x[:, None, :] - a[:, None] * m) ** 2).sum(-1) / (2 * var_x)
        w = torch.softmax(logw, dim=-1)  # (M, K)
        post_var = 1.0 / (1.0 / self.s**2 + a**2 / sg**2)
        comp_mean = post_var[:, None] * (m / self.s**2 + (a / sg**2)[:, None] * x[:, None, :])
        return (w[..., None] * comp_mean).sum(1)
