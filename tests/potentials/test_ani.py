"""TorchANI backend (tps_diffusion.ani): units, batching, gradients, invariances, errors.

The ANI-1x / ANI-1ccx NeuroChem parameters are installed on first use (pip download of the
torchani 2.0 wheel, a few seconds) by the session fixture; nothing here is skipped for lack
of them.
"""

from __future__ import annotations

import math
import urllib.error
import zipfile
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
import torch

import tps_diffusion.potentials.ani as ani
import tps_diffusion.potentials.ani_parameters as ani_parameters
from tps_diffusion.potentials.ani import HARTREE_TO_KJ_PER_MOL, ANIPotential
from tps_diffusion.potentials.ani_parameters import (
    find_parameter_dir,
    install_offline_parameters,
    offline_parameters_installed,
)

REPO = Path(__file__).resolve().parents[2]
HARTREE = 2625.499639  # kJ/mol, written out by hand on purpose


def _find_pdb() -> Path:
    cands = sorted((REPO / "systems" / "alanine_dipeptide").glob("*C5*.pdb"))
    cands += sorted((REPO / "systems" / "alanine_dipeptide").glob("*.pdb"))
    cands += [REPO.parent / "shared" / "data" / "alanine_dipeptide_C5.pdb"]
    for c in cands:
        if c.is_file():
            return c
    pytest.fail(f"no alanine dipeptide PDB found (looked at {[str(c) for c in cands]})")


@pytest.fixture(scope="session")
def param_root() -> Path:
    try:
        root = find_parameter_dir("ANI-1x")
        find_parameter_dir("ANI-1ccx")
        return root
    except FileNotFoundError:
        return install_offline_parameters()


@pytest.fixture(scope="module")
def aldp():
    traj = md.load(str(_find_pdb()))
    assert traj.n_atoms == 22
    return traj


@pytest.fixture(scope="module")
def x0(aldp) -> torch.Tensor:
    return torch.tensor(aldp.xyz.reshape(-1), dtype=torch.float64)


@pytest.fixture(scope="module")
def pot64(param_root, aldp) -> ANIPotential:
    return ANIPotential(aldp.topology, "ANI-1x", device="cpu", dtype=torch.float64)


@pytest.fixture(scope="module")
def pot32(param_root, aldp) -> ANIPotential:
    return ANIPotential(aldp.topology, "ANI-1x", device="cpu", self_energies=False)


def _torchani_direct(root, info, aldp, dtype):
    """Energy (kJ/mol) and forces (kJ/mol/nm) from torchani's own model, converted by hand."""
    import torchani.neurochem

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHANI_DATA_DIR", str(root))
        model = torchani.neurochem.load_model_from_info_file(root / "Neurochem" / info)
    model = model.to(dtype=dtype)
    species = torch.tensor([[a.element.number for a in aldp.topology.atoms]])
    coords = (torch.tensor(aldp.xyz, dtype=dtype) * 10.0).requires_grad_(True)  # Angstrom
    e_ha = model((species, coords)).energies
    (g,) = torch.autograd.grad(e_ha.sum(), coords)  # Hartree / Angstrom
    return float(e_ha.detach()) * HARTREE, (-g * HARTREE * 10.0).reshape(-1)


@pytest.mark.parametrize("model,info", [("ANI-1x", "ani-1x_8x.info"), ("ANI-1ccx", "ani-1ccx_8x.info")])
def test_matches_torchani_direct(param_root, aldp, x0, pot64, pot32, model, info):
    e_ref, f_ref = _torchani_direct(param_root, info, aldp, torch.float64)
    if model == "ANI-1x":
        pot, p32 = pot64, pot32
    else:
        pot = ANIPotential(aldp.topology, model, device="cpu", dtype=torch.float64)
        p32 = None
    e, f = pot.forces(x0)
    assert abs(float(e) - e_ref) < 1e-3  # HARTREE literal vs CODATA: ~1e-10 relative
    torch.testing.assert_close(f, f_ref, rtol=1e-6, atol=1e-6)
    # plausible absolute value: alanine dipeptide ~ -495.7 Hartree at wB97X/6-31G(d)
    assert -497.0 < float(e) / HARTREE_TO_KJ_PER_MOL < -494.0
    if p32 is not None:  # float32 model (self energies split off) agrees to float32 precision
        e32 = p32(x0.float())
        assert e32.dtype == torch.float32
        assert abs(float(e32) + p32.self_energy - e_ref) < 0.05


def test_topology_and_symbols_agree(param_root, aldp, x0, pot64):
    symbols = [a.element.symbol for a in aldp.topology.atoms]
    kw = dict(device="cpu", dtype=torch.float64, model_index=0)  # one member: loads faster
    by_top = ANIPotential(aldp.topology, "ANI-1x", **kw)
    by_symbol = ANIPotential([s.upper() for s in symbols], "ani1x", **kw)
    by_number = ANIPotential([a.element.number for a in aldp.topology.atoms], "ANI-1x", **kw)
    assert by_symbol.elements == pot64.elements == by_number.elements == by_top.elements
    assert float(by_symbol(x0)) == pytest.approx(float(by_top(x0)), abs=1e-9)
    assert float(by_top(x0)) == pytest.approx(float(pot64(x0)), abs=20.0)  # member vs ensemble mean


def test_self_energy_split(aldp, x0, pot64, pot32):
    assert float(pot32(x0.float())) + pot32.self_energy == pytest.approx(float(pot64(x0)), abs=0.05)
    torch.testing.assert_close(pot32.forces(x0.float())[1].double(), pot64.forces(x0)[1], rtol=1e-3, atol=0.05)


def test_batched_equals_one_by_one(x0, pot32):
    g = torch.Generator().manual_seed(0)
    x = (x0.float() + 0.003 * torch.randn(2, 2, x0.numel(), generator=g)).requires_grad_(True)
    e = pot32(x)
    assert e.shape == (2, 2)
    (grad,) = torch.autograd.grad(e.sum(), x)
    e = e.detach()
    for i in range(2):
        for j in range(2):
            ei, fi = pot32.forces(x[i, j].detach())
            assert ei.shape == ()
            assert float(e[i, j]) == pytest.approx(float(ei), abs=2e-3)
            torch.testing.assert_close(-grad[i, j], fi, rtol=1e-4, atol=1e-2)
    assert pot32(x0.float()[None, :][:0]).shape == (0,)


def test_forces_match_finite_differences(x0, pot64):
    g = torch.Generator().manual_seed(1)
    x = x0 + 0.002 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    e, f = pot64.forces(x)
    h = 1e-5  # nm
    eye = torch.eye(x.numel(), dtype=torch.float64) * h
    with torch.no_grad():
        ep, em = pot64(x + eye), pot64(x - eye)  # one batched call each
    f_fd = -(ep - em) / (2 * h)
    assert f.abs().max() > 10.0  # not trivially zero (kJ/mol/nm)
    torch.testing.assert_close(f, f_fd, rtol=1e-5, atol=1e-3)


def test_translation_rotation_invariance(x0, pot64):
    g = torch.Generator().manual_seed(2)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    rot = q * torch.sign(torch.diagonal(r))
    if torch.det(rot) < 0:
        rot[:, 0] = -rot[:, 0]
    shift = torch.tensor([1.3, -0.7, 2.1], dtype=torch.float64)
    xyz = x0.view(-1, 3)
    x_new = (xyz @ rot.T + shift).reshape(-1)
    e0, f0 = pot64.forces(x0)
    e1, f1 = pot64.forces(x_new)
    assert float(e1) == pytest.approx(float(e0), abs=1e-6)
    torch.testing.assert_close(f1.view(-1, 3), f0.view(-1, 3) @ rot.T, rtol=1e-6, atol=1e-6)
    # net force and torque vanish
    assert f0.view(-1, 3).sum(0).abs().max() < 1e-6
    torque = torch.linalg.cross(xyz, f0.view(-1, 3)).sum(0)
    assert torque.abs().max() < 1e-6


def test_ani2x_offline_error(monkeypatch, aldp):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(ani.torchani.models, "_fetch_state_dict", offline)
    with pytest.raises(RuntimeError) as info:
        ANIPotential(aldp.topology, "ANI-2x", device="cpu")
    msg = str(info.value)
    assert "\n" not in msg
    assert "ANI-1x" in msg and "ANI-1ccx" in msg and "--install" in msg


def test_unsupported_elements_and_shapes(param_root):
    with pytest.raises(ValueError, match="Br"):
        ANIPotential(["C", "H", "Br"], "ANI-1x", device="cpu")
    with pytest.raises(ValueError, match=r"S.*ANI-2x adds"):
        ANIPotential(["C", "S", "H"], "ANI-1ccx", device="cpu")
    with pytest.raises(ValueError, match="Br"):  # checked before ANI-2x weights are fetched
        ANIPotential(["C", "Br"], "ANI-2x", device="cpu")
    with pytest.raises(ValueError, match="unknown ANI model"):
        ANIPotential(["C"], "ANI-3x", device="cpu")
    pot = ANIPotential(["O", "H", "H"], "ANI-1x", device="cpu", model_index=0)
    with pytest.raises(ValueError, match=r"x\[\.\.\., 9\]"):
        pot(torch.zeros(4, 8))


def test_missing_parameters_error(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHANI_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--install"):
        ANIPotential(["O", "H", "H"], "ANI-1x", device="cpu")


def test_install_from_wheel_is_atomic_and_idempotent(param_root, tmp_path, monkeypatch):
    # A wheel-like zip holding the installed files under torchani/resources/, as torchani 2.0 does.
    wheel = tmp_path / "torchani-2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for p in sorted((param_root / "Neurochem").rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                zf.write(p, "torchani/resources/" + p.relative_to(param_root / "Neurochem").as_posix())
        zf.writestr("torchani/__init__.py", "")
    dest = tmp_path / "dest"
    (dest / "Neurochem").mkdir(parents=True)
    (dest / "Neurochem" / "other.info").write_text("kept\n")  # an existing Neurochem dir is merged
    assert not offline_parameters_installed(dest)
    assert install_offline_parameters(dest, wheel=wheel) == dest
    assert offline_parameters_installed(dest)
    assert (dest / "Neurochem" / "other.info").read_text() == "kept\n"
    assert [p.name for p in dest.iterdir()] == ["Neurochem"]  # no temporary leftovers

    def no_pip(*a, **k):
        raise AssertionError("pip must not run when the parameters are present")

    monkeypatch.setattr(ani_parameters.subprocess, "run", no_pip)
    assert install_offline_parameters(dest) == dest
    assert ani_parameters.main(["--check", "--dest", str(dest)]) == 0
    assert ani_parameters.main(["--check", "--dest", str(tmp_path / "nowhere")]) == 1

    # the installed copy loads and gives the same energies as the session copy
    water = torch.tensor([0.0, 0.0, 0.0, 0.0957, 0.0, 0.0, -0.024, 0.0927, 0.0], dtype=torch.float64)
    kw = dict(device="cpu", dtype=torch.float64, model_index=3)
    a = ANIPotential(["O", "H", "H"], "ANI-1x", data_dir=dest, **kw)
    b = ANIPotential(["O", "H", "H"], "ANI-1x", data_dir=param_root, **kw)
    assert a.parameter_dir == dest
    assert float(a(water)) == pytest.approx(float(b(water)), abs=1e-9)
    assert math.isfinite(float(a(water)))
    assert -77.0 * HARTREE < float(a(water)) < -75.0 * HARTREE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(aldp, x0, pot64):
    pot = ANIPotential(aldp.topology, "ANI-1x", device="cuda", dtype=torch.float64)
    x = x0.repeat(4, 1).cuda()
    e, f = pot.forces(x)
    assert e.device.type == "cuda" and f.device.type == "cuda"
    e_cpu, f_cpu = pot64.forces(x0)
    np.testing.assert_allclose(e.cpu().numpy(), float(e_cpu), atol=1e-6)
    torch.testing.assert_close(f.cpu(), f_cpu.expand(4, -1), rtol=1e-6, atol=1e-6)
    # CPU input to a CUDA model: the energy comes back on the CPU
    assert pot(x0).device.type == "cpu"
