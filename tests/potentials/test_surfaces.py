"""Energy surfaces: the periodic grid interpolant and the Mueller-Brown surface."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from scipy.optimize import root

from tps_diffusion.potentials.surfaces import MullerBrown, PeriodicGridSurface, load_aldp_surface
from tps_diffusion.utils.systems_dir import systems_dir

TWO_PI = 2 * math.pi


@pytest.fixture(scope="module")
def aldp() -> PeriodicGridSurface:
    return load_aldp_surface()


def _nodes(surface: PeriodicGridSurface) -> torch.Tensor:
    phi, psi = surface.grid_axes
    return torch.tensor(np.stack(np.meshgrid(phi, psi, indexing="ij"), axis=-1))


def _random_points(n: int, seed: int, low: float = -math.pi, high: float = math.pi) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, 2, generator=generator, dtype=torch.float64)


def _fd_gradient(energy, x: torch.Tensor, step: float = 1e-6) -> torch.Tensor:
    """Central finite differences of ``energy`` at points ``x`` (N, 2)."""
    columns = []
    for k in range(2):
        shift = torch.zeros_like(x)
        shift[:, k] = step
        with torch.no_grad():
            columns.append((energy(x + shift) - energy(x - shift)) / (2 * step))
    return torch.stack(columns, dim=-1)


def _autograd_gradient(energy, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(energy(x).sum(), x)
    return grad


# --------------------------------------------------------------------- the aldp data file


def test_aldp_file_layout(aldp):
    values = aldp.grid_values
    assert values.shape == (89, 89)
    phi, psi = aldp.grid_axes
    np.testing.assert_allclose(phi, -math.pi + TWO_PI * np.arange(89) / 89)
    np.testing.assert_allclose(psi, phi)
    # Rows 2 and 3 of the raw file: (phi_0, psi_0) = 16.27487217 and (phi_1, psi_0) = 13.298453643;
    # row 91 is (phi_0, psi_1) = 17.176899355.
    assert values[0, 0] == pytest.approx(16.27487217, abs=1e-8)
    assert values[1, 0] == pytest.approx(13.298453643, abs=1e-8)
    assert values[0, 1] == pytest.approx(17.176899355, abs=1e-8)
    # Column 1 is phi: the global minimum is C7eq, phi ~ -79 deg, psi ~ 63 deg.
    i, j = np.unravel_index(np.argmin(values), values.shape)
    assert values[i, j] == 0.0
    assert np.degrees(phi[i]) == pytest.approx(-78.9, abs=0.1)
    assert np.degrees(psi[j]) == pytest.approx(62.7, abs=0.1)


def test_systems_dir_override(tmp_path, monkeypatch):
    (tmp_path / "aldp_surface").mkdir()
    shutil.copy(systems_dir() / "aldp_surface" / "aldp_phi_psi_surface.dat", tmp_path / "aldp_surface")
    monkeypatch.setenv("TPS_DIFFUSION_SYSTEMS", str(tmp_path))
    assert systems_dir() == tmp_path
    assert load_aldp_surface().grid_values.shape == (89, 89)
    monkeypatch.setenv("TPS_DIFFUSION_SYSTEMS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="phi psi U"):
        load_aldp_surface()


# ------------------------------------------------------------------- interpolant properties


def test_reproduces_grid_values(aldp):
    np.testing.assert_allclose(aldp(_nodes(aldp)).numpy(), aldp.grid_values, rtol=0, atol=1e-8)
    rough = np.random.default_rng(1).normal(size=(7, 11))
    surface = PeriodicGridSurface(rough, lower=0.5, period=3.0)
    np.testing.assert_allclose(surface(_nodes(surface)).numpy(), rough, rtol=0, atol=1e-10)


def test_periodic(aldp):
    x = _random_points(500, seed=2)
    k = torch.randint(-3, 4, (500, 2), generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        np.testing.assert_allclose(aldp(x + TWO_PI * k).numpy(), aldp(x).numpy(), rtol=0, atol=1e-9)
    # Across the seam the interpolant is continuous.
    eps = 1e-9
    seam = [[math.pi - eps, 0.3], [-math.pi + eps, 0.3], [1.0, math.pi - eps], [1.0, -math.pi + eps]]
    with torch.no_grad():
        energy = aldp(torch.tensor(seam, dtype=torch.float64))
    assert energy[0].item() == pytest.approx(energy[1].item(), abs=1e-6)
    assert energy[2].item() == pytest.approx(energy[3].item(), abs=1e-6)


def test_gradient_matches_finite_differences(aldp):
    x = _random_points(300, seed=4, low=-4.0, high=4.0)
    np.testing.assert_allclose(_autograd_gradient(aldp, x), _fd_gradient(aldp, x), rtol=1e-6, atol=1e-5)
    rough = PeriodicGridSurface(np.random.default_rng(5).normal(size=(6, 9)))
    np.testing.assert_allclose(_autograd_gradient(rough, x), _fd_gradient(rough, x), rtol=1e-6, atol=1e-6)


def test_converges_to_smooth_function():
    """On samples of a smooth periodic function the cubic spline is accurate to O(h^4)."""

    def truth(phi, psi):
        return np.sin(phi) * np.cos(2 * psi) + 0.5 * np.cos(phi - psi)

    n = 64
    axis = -math.pi + TWO_PI * np.arange(n) / n
    surface = PeriodicGridSurface(truth(*np.meshgrid(axis, axis, indexing="ij")))
    x = _random_points(1000, seed=6)
    with torch.no_grad():
        error = np.abs(surface(x).numpy() - truth(x[:, 0].numpy(), x[:, 1].numpy()))
    assert error.max() < 1e-4


def test_between_nodes_bounded_by_neighbours(aldp):
    """Inside a cell U stays within its 4 corner values, give or take 1/8 of the local 4 x 4 range."""
    values = aldp.grid_values
    phi, psi = aldp.grid_axes
    spacing = TWO_PI / 89

    def shifted(di, dj):
        return np.roll(values, (-di, -dj), axis=(0, 1))

    corners = [shifted(di, dj) for di in (0, 1) for dj in (0, 1)]
    block = [shifted(di, dj) for di in (-1, 0, 1, 2) for dj in (-1, 0, 1, 2)]
    margin = (np.maximum.reduce(block) - np.minimum.reduce(block)) / 8
    for offset in np.random.default_rng(7).uniform(0.05, 0.95, size=(4, 2)):
        grid = np.meshgrid(phi + offset[0] * spacing, psi + offset[1] * spacing, indexing="ij")
        with torch.no_grad():
            inside = aldp(torch.tensor(np.stack(grid, axis=-1))).numpy()
        assert np.all(inside >= np.minimum.reduce(corners) - margin)
        assert np.all(inside <= np.maximum.reduce(corners) + margin)


def test_constant_grid_is_constant():
    surface = PeriodicGridSurface(np.full((5, 8), 3.25))
    x = _random_points(50, seed=8, low=-10, high=10)
    np.testing.assert_allclose(surface(x).detach().numpy(), 3.25, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_autograd_gradient(surface, x), 0.0, atol=1e-12)


def test_shapes_and_dtypes(aldp):
    x64 = _random_points(15, seed=9).reshape(3, 5, 2)
    energy64 = aldp(x64)
    assert energy64.shape == (3, 5) and energy64.dtype == torch.float64
    energy32 = aldp(x64.float())
    assert energy32.dtype == torch.float32
    np.testing.assert_allclose(energy32.numpy(), energy64.numpy(), atol=2e-3)
    grad32 = _autograd_gradient(aldp, x64.float().reshape(-1, 2))
    assert grad32.dtype == torch.float32
    np.testing.assert_allclose(grad32, _autograd_gradient(aldp, x64.reshape(-1, 2)), atol=5e-3)
    assert aldp(torch.zeros(2, dtype=torch.float64)).shape == ()
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        aldp(torch.zeros(4, 3))


def test_second_derivatives_raise(aldp):
    x = _random_points(3, seed=10).requires_grad_()
    (grad,) = torch.autograd.grad(aldp(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(grad.sum(), x)


def test_bad_grid_values():
    with pytest.raises(ValueError, match="2-D grid"):
        PeriodicGridSurface(np.zeros(10))
    with pytest.raises(ValueError, match="2-D grid"):
        PeriodicGridSurface(np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="period"):
        PeriodicGridSurface(np.zeros((5, 5)), period=0.0)


# ---------------------------------------------------------------------------- file reading


def _write_grid(path, values: np.ndarray, order: np.ndarray | None = None) -> None:
    n, m = values.shape
    phi = -math.pi + TWO_PI * np.arange(n) / n
    psi = -math.pi + TWO_PI * np.arange(m) / m
    i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    rows = np.stack([phi[i.ravel()], psi[j.ravel()], values.ravel()], axis=1)
    if order is not None:
        rows = rows[order]
    np.savetxt(path, rows, header="phi psi U")


def test_from_file_any_row_order(tmp_path):
    values = np.random.default_rng(11).normal(size=(6, 8))
    path = tmp_path / "grid.dat"
    _write_grid(path, values, order=np.random.default_rng(12).permutation(values.size))
    surface = PeriodicGridSurface.from_file(path)
    np.testing.assert_array_equal(surface.grid_values, values)


@pytest.mark.parametrize(
    "content, message",
    [
        ("0 1\n2 3\n", "2 columns"),
        ("# phi psi U\n0 zero 1\n", "cannot parse"),
        ("", "0 rows"),
        ("-3.141592654 -3.141592654 nan\n", "non-finite"),
    ],
)
def test_from_file_malformed(tmp_path, content, message):
    path = tmp_path / "bad.dat"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        PeriodicGridSurface.from_file(path)
    assert "phi psi U" in str(info.value)


def test_from_file_incomplete_or_off_grid(tmp_path):
    values = np.random.default_rng(13).normal(size=(6, 6))
    path = tmp_path / "missing_row.dat"
    _write_grid(path, values, order=np.arange(values.size - 1))
    with pytest.raises(ValueError, match="do not fill"):
        PeriodicGridSurface.from_file(path)
    path = tmp_path / "off_grid.dat"
    rows = np.column_stack([np.linspace(-3, 3, 36), np.repeat(np.linspace(-3, 3, 6), 6), np.zeros(36)])
    np.savetxt(path, rows)
    with pytest.raises(ValueError, match="not on a grid"):
        PeriodicGridSurface.from_file(path)


def test_from_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="phi psi U"):
        PeriodicGridSurface.from_file(tmp_path / "absent.dat")


# --------------------------------------------------------------------------- Mueller-Brown

# Mueller & Brown, Theor. Chim. Acta 53, 75 (1979): (x, y) to 3 decimals, V to 2 decimals,
# number of negative Hessian eigenvalues.
MB_STATIONARY = [
    ((-0.558, 1.442), -146.70, 0),
    ((0.623, 0.028), -108.17, 0),
    ((-0.050, 0.467), -80.77, 0),
    ((-0.822, 0.624), -40.66, 1),
    ((0.212, 0.293), -72.25, 1),
]


@pytest.mark.parametrize("published, energy, n_negative", MB_STATIONARY)
def test_muller_brown_stationary_points(published, energy, n_negative):
    surface = MullerBrown()

    def gradient(p):
        return _autograd_gradient(surface, torch.tensor(np.asarray(p)[None])).numpy()[0]

    rng = np.random.default_rng(14)
    for start in np.asarray(published) + rng.uniform(-0.03, 0.03, size=(3, 2)):
        found = root(gradient, start, tol=1e-12)
        assert found.success
        np.testing.assert_allclose(found.x, published, atol=1e-3)
        point = torch.tensor(found.x)
        assert np.abs(gradient(found.x)).max() < 1e-6
        assert surface(point).item() == pytest.approx(energy, abs=0.006)
        hessian = torch.autograd.functional.hessian(surface, point).numpy()
        assert np.sum(np.linalg.eigvalsh(hessian) < 0) == n_negative


def test_muller_brown_gradient_and_shapes():
    surface = MullerBrown()
    x = _random_points(200, seed=15, low=-1.5, high=1.5)
    np.testing.assert_allclose(_autograd_gradient(surface, x), _fd_gradient(surface, x), rtol=1e-6, atol=1e-4)
    assert surface(x.reshape(4, 50, 2)).shape == (4, 50)
    assert surface(x.float()).dtype == torch.float32
