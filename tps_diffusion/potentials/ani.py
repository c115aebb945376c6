"""TorchANI machine-learned potentials as plain torch energy functions.

:class:`ANIPotential` wraps a TorchANI model so that it behaves like every other energy in
this project: ``U(x) -> energy`` with ``x`` the flattened Cartesian coordinates in nm
(shape ``(..., 3 * n_atoms)``, atom order of the topology) and the energy in kJ/mol (shape
``(...)``), batched over any leading shape and differentiable (forces are ``-grad U`` in
kJ/mol/nm), on CPU or CUDA.

Models: ``"ANI-2x"`` (``torchani.models.ANI2x``; TorchANI fetches the weights over the network
the first time, so without network access use ANI-1x / ANI-1ccx), ``"ANI-1x"`` and ``"ANI-1ccx"``
(the original NeuroChem parameters, installed once for offline use by
:mod:`tps_diffusion.potentials.ani_parameters`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from ..core.device import resolve_device
from .ani_parameters import INSTALL_HINT, MODELS, canonical_model, find_parameter_dir, torchani_data_dir

# torchani warns at import time that its optional CUDA extensions are not compiled; they are
# not used here (the pure-PyTorch AEV path works on CPU and CUDA).
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
import torchani  # noqa: E402
import torchani.neurochem  # noqa: E402

__all__ = ["ANIPotential", "HARTREE_TO_KJ_PER_MOL", "NM_TO_ANGSTROM"]

#: Hartree -> kJ/mol (CODATA, the value TorchANI uses).
HARTREE_TO_KJ_PER_MOL = 2625.4996387552483
#: nm -> Angstrom.
NM_TO_ANGSTROM = 10.0

_ATOMIC_NUMBERS = {
    "H": 1, "He": 2, "Li": 3, "Be": 4, "B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "Ne": 10,
    "Na": 11, "Mg": 12, "Al": 13, "Si": 14, "P": 15, "S": 16, "Cl": 17, "Ar": 18, "K": 19,
    "Ca": 20, "Br": 35, "I": 53,
}  # fmt: skip


def _element_symbols(elements) -> list[str]:
    """Element symbols from a sequence of symbols / atomic numbers or an mdtraj/OpenMM topology."""
    if hasattr(elements, "atoms") and not isinstance(elements, (str, bytes)):
        atoms = elements.atoms() if callable(elements.atoms) else elements.atoms
        out = []
        for atom in atoms:
            if atom.element is None:
                raise ValueError(f"atom {atom} has no element (virtual site?); ANI needs real atoms only")
            out.append(atom.element.symbol)
        return out
    if isinstance(elements, str):
        raise TypeError("elements must be a sequence of symbols, not one string")
    by_number = {v: k for k, v in _ATOMIC_NUMBERS.items()}
    out = []
    for e in elements:
        if isinstance(e, (int,)) or (isinstance(e, Tensor) and e.ndim == 0):
            z = int(e)
            out.append(by_number.get(z, f"Z={z}"))
        else:
            s = str(e).strip()
            out.append(s[:1].upper() + s[1:].lower())
    return out


class ANIPotential(nn.Module):
    """TorchANI energy ``U(x)`` in kJ/mol for flattened coordinates ``x`` in nm.

    Args:
        elements: element symbols (or atomic numbers) in atom order, or an mdtraj / OpenMM
            ``Topology``.
        model: ``"ANI-2x"`` (weights fetched by TorchANI, needs network access the first
            time), ``"ANI-1x"`` or ``"ANI-1ccx"`` (offline NeuroChem parameters, see
            :func:`install_offline_parameters`).
        device: ``"auto"`` (CUDA when available), or any torch device.
        dtype: floating dtype of the model and of the computation.
        model_index: use a single ensemble member instead of the 8-model ensemble mean
            (about 8x cheaper; energies differ by the ensemble spread, ~1 kJ/mol).
        data_dir: root holding ``Neurochem/`` for ANI-1x/ANI-1ccx (default: searched, see
            :func:`find_parameter_dir`).
        strategy: TorchANI AEV strategy (``"pyaev"`` works everywhere; ``"cuaev"`` needs
            TorchANI's compiled CUDA extension).
        self_energies: include the atomic self energies (the default, TorchANI's total
            energy, about -1.3e6 kJ/mol for alanine dipeptide). ``False`` drops this
            composition-only constant (stored in :attr:`self_energy`, kJ/mol, float64), which
            leaves forces unchanged but makes float32 energy differences ~100x more precise
            (float32 resolves ~0.1 kJ/mol at -1.3e6 kJ/mol).

    ``forward(x)`` takes ``x`` of shape ``(..., 3 * n_atoms)`` on any device/dtype (it is
    moved to the model's device/dtype; the energy comes back on ``x``'s device, in the wider
    of the two dtypes) and returns the energies, shape ``(...)``, differentiable w.r.t. ``x``.
    """

    def __init__(
        self,
        elements,
        model: str = "ANI-2x",
        device="auto",
        dtype: torch.dtype = torch.float32,
        *,
        model_index: int | None = None,
        data_dir: str | os.PathLike | None = None,
        strategy: str = "pyaev",
        self_energies: bool = True,
    ):
        super().__init__()
        self.model_name = canonical_model(model)
        symbols = _element_symbols(elements)
        if not symbols:
            raise ValueError("ANIPotential needs at least one atom")
        supported, info_name = MODELS[self.model_name]
        bad = sorted({s for s in symbols if s not in supported})
        if bad:
            raise ValueError(
                f"{self.model_name} does not support element(s) {', '.join(bad)}; "
                f"it covers {', '.join(supported)}"
                + (" (ANI-2x adds F, S, Cl)" if self.model_name != "ANI-2x" else "")
            )
        self.elements: tuple[str, ...] = tuple(symbols)
        self.n_atoms = len(symbols)
        self.model_index = model_index
        dev = resolve_device(device)

        if info_name is None:
            self.model = self._load_ani2x(model_index, strategy)
            self.parameter_dir: Path | None = None
        else:
            root = find_parameter_dir(self.model_name, data_dir)
            with torchani_data_dir(root):
                self.model = torchani.neurochem.load_model_from_info_file(
                    root / "Neurochem" / info_name, model_index=model_index, strategy=strategy
                )
            self.parameter_dir = root
        self.model.requires_grad_(False)
        self.model.eval()
        self.register_buffer(
            "atomic_numbers", torch.tensor([_ATOMIC_NUMBERS[s] for s in symbols], dtype=torch.long)
        )
        sae = self.model.energy_shifter.self_energies.double()
        idx = self.model.species_converter(self.atomic_numbers.unsqueeze(0)).squeeze(0)
        #: sum of the atomic self energies of this molecule, kJ/mol (float64)
        self.self_energy: float = float(sae[idx].sum()) * HARTREE_TO_KJ_PER_MOL
        self.includes_self_energies = bool(self_energies)
        if not self_energies:
            self.model.set_enabled("energy_shifter", False)
        self.to(device=dev, dtype=dtype)

    @staticmethod
    def _load_ani2x(model_index, strategy):
        try:
            return torchani.models.ANI2x(model_index=model_index, strategy=strategy)
        except Exception as exc:  # URLError, HTTPError, huggingface_hub errors, ...
            raise RuntimeError(
                f"ANI-2x weights could not be obtained by torchani ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no network?'}); offline, use "
                f"model='ANI-1x' or model='ANI-1ccx' instead ({INSTALL_HINT})"
            ) from exc

    @property
    def device(self) -> torch.device:
        return self.atomic_numbers.device

    @property
    def dtype(self) -> torch.dtype:
        for p in self.model.parameters():
            return p.dtype
        return torch.get_default_dtype()

    def __repr__(self) -> str:  # the wrapped TorchANI module tree is long; keep this one line
        member = "ensemble" if self.model_index is None else f"member {self.model_index}"
        sae = "" if self.includes_self_energies else ", self_energies=False"
        return (
            f"ANIPotential(model={self.model_name} ({member}), n_atoms={self.n_atoms}, "
            f"device={self.device}, dtype={self.dtype}{sae})"
        )

    def forward(self, x: Tensor) -> Tensor:
        n3 = 3 * self.n_atoms
        if x.shape[-1] != n3:
            raise ValueError(f"expected x[..., {n3}] (3 * {self.n_atoms} atoms, nm), got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        xm = x.to(device=self.device, dtype=self.dtype).reshape(-1, self.n_atoms, 3)
        if xm.shape[0] == 0:
            return x.sum(-1)  # empty batch: empty result, still attached to x
        coords = xm * NM_TO_ANGSTROM
        species = self.atomic_numbers.unsqueeze(0).expand(coords.shape[0], -1)
        energy = self.model((species, coords)).energies * HARTREE_TO_KJ_PER_MOL
        return energy.reshape(lead).to(device=x.device, dtype=torch.promote_types(x.dtype, self.dtype))

    def forces(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies (kJ/mol) and forces ``-dU/dx`` (kJ/mol/nm, shaped and typed like ``x``), detached."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            energy = self(xg)
            (grad,) = torch.autograd.grad(energy.sum(), xg)
        return energy.detach(), -grad
