"""TorchANI machine-learned potentials as plain torch energy functions.

:class:`ANIPotential` wraps a TorchANI model so that it behaves like every other energy in
this project: ``U(x) -> energy`` with ``x`` the flattened Cartesian coordinates in nm
(shape ``(..., 3 * n_atoms)``, atom order of the topology) and the energy in kJ/mol (shape
``(...)``), batched over any leading shape and differentiable (forces are ``-grad U`` in
kJ/mol/nm), on CPU or CUDA.

Models and where their parameters come from
-------------------------------------------
``"ANI-2x"``
    ``torchani.models.ANI2x`` -- TorchANI fetches the weights over the network the first time
    (cached under ``$TORCHANI_DATA_DIR/StateDicts``). Without network access this fails;
    use ANI-1x / ANI-1ccx with the offline parameters instead.
``"ANI-1x"``, ``"ANI-1ccx"``
    The original NeuroChem parameter files, read by TorchANI's own NeuroChem loader
    (``torchani.neurochem.load_model_from_info_file``). TorchANI 2.9 no longer ships them, but
    the torchani 2.0 wheel on the package index does (``torchani/resources/ani-1x_8x*`` and
    ``torchani/resources/ani-1ccx_8x*``). :func:`install_offline_parameters` (or
    ``python -m tps_diffusion.ani --install``) downloads that wheel with pip and unpacks the
    files into ``<dir>/Neurochem/``, the layout TorchANI 2.9 expects below
    ``$TORCHANI_DATA_DIR``.

Parameter directories are searched in this order: the ``data_dir`` argument, then
``$TORCHANI_DATA_DIR``, then :func:`default_parameter_dir` (``$XDG_CACHE_HOME`` or
``~/.cache``, then ``tps_diffusion/torchani``), which is also where
:func:`install_offline_parameters` puts them by default. No environment variable is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

# torchani warns at import time that its optional CUDA extensions are not compiled; they are
# not used here (the pure-PyTorch AEV path works on CPU and CUDA).
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
import torchani  # noqa: E402
import torchani.neurochem  # noqa: E402

__all__ = [
    "ANIPotential",
    "HARTREE_TO_KJ_PER_MOL",
    "MODELS",
    "default_parameter_dir",
    "find_parameter_dir",
    "install_offline_parameters",
    "offline_parameters_installed",
]

#: Hartree -> kJ/mol (CODATA, the value TorchANI uses).
HARTREE_TO_KJ_PER_MOL = 2625.4996387552483
#: nm -> Angstrom.
NM_TO_ANGSTROM = 10.0

#: Supported model names -> (supported elements, NeuroChem info file or None for torchani's API).
MODELS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "ANI-2x": (("H", "C", "N", "O", "F", "S", "Cl"), None),
    "ANI-1x": (("H", "C", "N", "O"), "ani-1x_8x.info"),
    "ANI-1ccx": (("H", "C", "N", "O"), "ani-1ccx_8x.info"),
}
_OFFLINE_INFO_FILES = ("ani-1x_8x.info", "ani-1ccx_8x.info")
_WHEEL_SPEC = "torchani==2.0.*"
_WHEEL_RESOURCES = PurePosixPath("torchani/resources")
_INSTALL_HINT = (
    "install them with `python -m tps_diffusion.ani --install` or tps_diffusion.ani.install_offline_parameters()"
)

_ATOMIC_NUMBERS = {
    "H": 1, "He": 2, "Li": 3, "Be": 4, "B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "Ne": 10,
    "Na": 11, "Mg": 12, "Al": 13, "Si": 14, "P": 15, "S": 16, "Cl": 17, "Ar": 18, "K": 19,
    "Ca": 20, "Br": 35, "I": 53,
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# parameter directories
# --------------------------------------------------------------------------------------------
def default_parameter_dir() -> Path:
    """Default root for the offline parameters (``<root>/Neurochem/...``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tps_diffusion" / "torchani"


def _complete(root: Path, info_name: str) -> bool:
    """True when ``root/Neurochem`` holds ``info_name`` and every file it refers to."""
    nc = root / "Neurochem"
    info = nc / info_name
    if not info.is_file():
        return False
    try:
        const, sae, prefix, size = [ln.strip() for ln in info.read_text().splitlines()[:4]]
        size_i = int(size)
    except ValueError:
        return False
    if not ((nc / const).is_file() and (nc / sae).is_file()):
        return False
    prefix_p = nc / prefix
    return all((prefix_p.parent / f"{prefix_p.name}{i}" / "networks").is_dir() for i in range(size_i))


def offline_parameters_installed(root: str | os.PathLike | None = None) -> bool:
    """Whether the ANI-1x and ANI-1ccx NeuroChem files are complete below ``root``."""
    root = Path(root) if root is not None else default_parameter_dir()
    return all(_complete(root, name) for name in _OFFLINE_INFO_FILES)


def find_parameter_dir(model: str = "ANI-1x", data_dir: str | os.PathLike | None = None) -> Path:
    """Root directory (TorchANI data dir) holding the NeuroChem files of ``model``.

    Looks at ``data_dir``, ``$TORCHANI_DATA_DIR`` and :func:`default_parameter_dir`, in that
    order; raises ``FileNotFoundError`` naming the fix when none has them.
    """
    info_name = MODELS[_canonical_model(model)][1]
    if info_name is None:
        raise ValueError(f"{model} is not loaded from NeuroChem files")
    candidates: list[Path] = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    if os.environ.get("TORCHANI_DATA_DIR"):
        candidates.append(Path(os.environ["TORCHANI_DATA_DIR"]))
    candidates.append(default_parameter_dir())
    for root in candidates:
        if _complete(root, info_name):
            return root
    looked = ", ".join(str(c / "Neurochem" / info_name) for c in candidates)
    raise FileNotFoundError(f"{model} parameters not found (looked for {looked}); {_INSTALL_HINT}")


@contextlib.contextmanager
def _torchani_data_dir(root: Path) -> Iterator[None]:
    """Temporarily point TorchANI's ``TORCHANI_DATA_DIR`` at ``root``.

    TorchANI's NeuroChem loader resolves the paths inside an ``.info`` file relative to
    ``$TORCHANI_DATA_DIR/Neurochem``.
    """
    old = os.environ.get("TORCHANI_DATA_DIR")
    os.environ["TORCHANI_DATA_DIR"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCHANI_DATA_DIR", None)
        else:
            os.environ["TORCHANI_DATA_DIR"] = old


# --------------------------------------------------------------------------------------------
# installing the offline parameters
# --------------------------------------------------------------------------------------------
def _safe_member(name: str) -> PurePosixPath | None:
    """Path of a wheel member relative to ``torchani/resources`` (None when outside it)."""
    p = PurePosixPath(name)
    try:
        rel = p.relative_to(_WHEEL_RESOURCES)
    except ValueError:
        return None
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    return rel


def _needed_members(zf: zipfile.ZipFile) -> dict[str, PurePosixPath]:
    """Wheel members the NeuroChem loader needs: info, AEV constants, SAEs, ensemble networks."""
    names = {}
    for name in zf.namelist():
        rel = _safe_member(name)
        if rel is not None and not name.endswith("/"):
            names[rel.as_posix()] = name
    out: dict[str, PurePosixPath] = {}
    for info_name in _OFFLINE_INFO_FILES:
        if info_name not in names:
            raise RuntimeError(f"{info_name} not found under {_WHEEL_RESOURCES}/ in {zf.filename}")
        out[names[info_name]] = PurePosixPath(info_name)
        const, sae, prefix, size = [ln.strip() for ln in zf.read(names[info_name]).decode().splitlines()[:4]]
        for rel in (const, sae):
            if rel not in names:
                raise RuntimeError(f"{rel} (named in {info_name}) missing from {zf.filename}")
            out[names[rel]] = PurePosixPath(rel)
        pre = PurePosixPath(prefix)
        for i in range(int(size)):
            net_dir = (pre.parent / f"{pre.name}{i}" / "networks").as_posix() + "/"
            members = [r for r in names if r.startswith(net_dir)]
            if not members:
                raise RuntimeError(f"{net_dir} (ensemble member {i} of {info_name}) missing from {zf.filename}")
            out.update({names[r]: PurePosixPath(r) for r in members})
    return out


def _download_wheel(dest: Path, quiet: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", _WHEEL_SPEC, "-d", str(dest)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=quiet, text=True)
    if res.returncode != 0:
        detail = (res.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed (exit {res.returncode}) {' '.join(detail)}".strip())
    wheels = sorted(dest.glob("torchani-2.0*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download succeeded but no torchani 2.0 wheel in {dest}")
    return wheels[-1]


def install_offline_parameters(
    dest: str | os.PathLike | None = None,
    *,
    wheel: str | os.PathLike | None = None,
    force: bool = False,
    quiet: bool = True,
) -> Path:
    """Install the ANI-1x / ANI-1ccx NeuroChem parameters for offline use; return the root.

    The files come from the torchani 2.0 wheel (``pip download --no-deps torchani==2.0.*``,
    or ``wheel`` if given) and land in ``<dest>/Neurochem/`` exactly as TorchANI 2.9's
    NeuroChem loader expects them, so that ``TORCHANI_DATA_DIR=<dest>`` also works for
    TorchANI itself. ``dest`` defaults to :func:`default_parameter_dir`.

    Idempotent (returns at once when complete, unless ``force``) and atomic: everything is
    unpacked into a temporary directory next to the target and renamed into place, info files
    last, so an interrupted install never looks complete.
    """
    root = Path(dest) if dest is not None else default_parameter_dir()
    if not force and offline_parameters_installed(root):
        return root
    root.mkdir(parents=True, exist_ok=True)
    nc = root / "Neurochem"
    with tempfile.TemporaryDirectory(prefix=".tps-ani-install-", dir=root) as tmp_s:
        tmp = Path(tmp_s)
        whl = Path(wheel) if wheel is not None else _download_wheel(tmp / "wheel", quiet)
        stage = tmp / "Neurochem"
        with zipfile.ZipFile(whl) as zf:
            for member, rel in _needed_members(zf).items():
                target = stage.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not offline_parameters_installed(tmp):
            raise RuntimeError(f"unpacked parameters from {whl} are incomplete")
        try:
            os.rename(stage, nc)  # fast path: no Neurochem dir yet -> one atomic rename
        except OSError:
            if not force and offline_parameters_installed(root):
                return root  # a concurrent install finished first
            # Neurochem/ exists (other models, an older or concurrent install): replace our
            # entries one by one, data directories first and the info files last.
            nc.mkdir(parents=True, exist_ok=True)
            entries = sorted(stage.iterdir(), key=lambda p: p.suffix == ".info")
            for entry in entries:
                target = nc / entry.name
                if target.is_dir() and not target.is_symlink():
                    target.rename(tmp / f"old-{entry.name}")  # removed with tmp
                os.replace(entry, target)
    if not offline_parameters_installed(root):
        raise RuntimeError(f"installing the offline ANI parameters into {root} failed")
    return root


# --------------------------------------------------------------------------------------------
# the potential
# --------------------------------------------------------------------------------------------
def _canonical_model(model: str) -> str:
    key = model.replace("_", "-").lower()
    for name in MODELS:
        if name.lower() == key or name.lower().replace("-", "") == key.replace("-", ""):
            return name
    raise ValueError(f"unknown ANI model {model!r}; choose one of {', '.join(MODELS)}")


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


def _resolve_device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
        self.model_name = _canonical_model(model)
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
        dev = _resolve_device(device)

        if info_name is None:
            self.model = self._load_ani2x(model_index, strategy)
            self.parameter_dir: Path | None = None
        else:
            root = find_parameter_dir(self.model_name, data_dir)
            with _torchani_data_dir(root):
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
                f"model='ANI-1x' or model='ANI-1ccx' instead ({_INSTALL_HINT})"
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


# --------------------------------------------------------------------------------------------
# command line: python -m tps_diffusion.ani --install
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tps_diffusion.ani", description=__doc__.split("\n\n")[0])
    ap.add_argument("--install", action="store_true", help="install the offline ANI-1x/ANI-1ccx parameters")
    ap.add_argument("--check", action="store_true", help="exit 0 if the offline parameters are installed, 1 if not")
    ap.add_argument("--dest", default=None, help=f"parameter root (default {default_parameter_dir()})")
    ap.add_argument("--wheel", default=None, help="use this torchani 2.0 wheel instead of pip download")
    ap.add_argument("--force", action="store_true", help="reinstall even if present")
    args = ap.parse_args(argv)
    dest = Path(args.dest) if args.dest else default_parameter_dir()
    if args.install:
        t0 = time.perf_counter()
        was = offline_parameters_installed(dest) and not args.force
        root = install_offline_parameters(dest, wheel=args.wheel, force=args.force, quiet=False)
        state = "already present" if was else f"installed in {time.perf_counter() - t0:.1f} s"
        print(f"ANI-1x/ANI-1ccx NeuroChem parameters {state}: {root / 'Neurochem'}")
        return 0
    if args.check:
        ok = offline_parameters_installed(dest)
        print(f"{dest / 'Neurochem'}: {'complete' if ok else 'missing'}")
        return 0 if ok else 1
    ap.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
