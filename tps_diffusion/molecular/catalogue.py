"""Built-in systems, by name: system files (TOML) in ``systems/``, loaded like any user's file.

    system = alanine_dipeptide()                  # systems/alanine_dipeptide/vacuum.toml
    system = get_system("chignolin_obc2")         # systems/chignolin/obc2.toml
    system = get_system("my_protein.toml")        # any system file (docs/systems.md)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import tomllib

from ..utils.systems_dir import systems_dir
from .states import Dihedral
from .system import MolecularSystem
from .system_file import load_system_file

__all__ = ["alanine_dipeptide", "alanine_dipeptide_cvs", "get_system", "register_system", "known_systems",
           "system_files", "ALDP_STATE_RADIUS", "ALDP_STATE_CENTRES_DEG"]

#: Radius (rad) of the alanine dipeptide states in (phi, psi), periodic Euclidean distance.
#: 0.75 rad (43 deg) is the paper's hit criterion (docs/method.md, section 8); it keeps the three
#: vacuum basins C5, C7eq and C7ax disjoint (C5-C7eq centres are 1.98 rad apart, C7eq-C7ax 2.56 rad).
#: The system files ``systems/alanine_dipeptide/*.toml`` use these values.
ALDP_STATE_RADIUS = 0.75
ALDP_STATE_CENTRES_DEG = {"C5": (-150.0, 160.0), "C7eq": (-78.0, 54.0), "C7ax": (60.0, -41.0)}

#: Short names of built-in systems (the default variant).
ALIASES = {"alanine_dipeptide": "alanine_dipeptide_vacuum", "chignolin": "chignolin_gbn2"}


def alanine_dipeptide_cvs(topology=None) -> tuple[Dihedral, Dihedral]:
    """phi = C(ACE)-N-CA-C, psi = N-CA-C-N(NME)."""
    phi = Dihedral("phi", ("resname ACE and name C", "resname ALA and name N", "resname ALA and name CA",
                           "resname ALA and name C"), topology)
    psi = Dihedral("psi", ("resname ALA and name N", "resname ALA and name CA", "resname ALA and name C",
                           "resname NME and name N"), topology)
    return phi, psi


def alanine_dipeptide(solvent: str = "vacuum", temperature: float = 300.0,
                      platform: str | None = None) -> MolecularSystem:
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms), amber99sbildn: ``systems/alanine_dipeptide/{solvent}.toml``.

    ``solvent``: ``"vacuum"`` (default; NoCutoff, flexible bonds), ``"obc2"`` (native
    GBSAOBCForce) or ``"tip3p"`` (explicit water, PME, HBonds). States C5, C7eq, C7ax on (phi, psi),
    balls of radius :data:`ALDP_STATE_RADIUS` = 0.75 rad (periodic distance). In vacuum the state
    structures are the minima of ``systems/alanine_dipeptide``; with solvent they are relaxed with
    (phi, psi) held fixed -- free OBC2 minimisation moves C7eq to psi ~ -13 deg (alpha_R side) and
    C7ax to (54, 29) deg, outside the vacuum state balls. Reference positions: the C5 structure.
    """
    path = systems_dir() / "alanine_dipeptide" / f"{solvent}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.toml"))
        raise ValueError(f"unknown solvent {solvent!r} for alanine dipeptide; use one of {', '.join(known)}")
    return load_system_file(path, temperature=temperature, platform=platform)


def system_files() -> dict[str, Path]:
    """The built-in system files by name (the ``name`` key of each ``systems/*/*.toml``)."""
    out = {}
    for path in sorted(systems_dir().glob("*/*.toml")):
        with open(path, "rb") as fh:
            out[tomllib.load(fh).get("name", path.stem)] = path
    return out


_REGISTRY: dict[str, Callable[..., MolecularSystem]] = {}


def register_system(name: str, factory: Callable[..., MolecularSystem]) -> None:
    """Make ``get_system(name)`` call ``factory(**kwargs)`` (for systems built in Python; a system
    file needs no registration: pass its path)."""
    _REGISTRY[name] = factory


def known_systems() -> list[str]:
    return sorted(set(_REGISTRY) | set(system_files()) | set(ALIASES))


def get_system(name: str | os.PathLike, **kwargs) -> MolecularSystem:
    """A system by built-in name (``"alanine_dipeptide"``, ``"chignolin_obc2"``, see :func:`known_systems`),
    registered name, or path of a system file (``*.toml``). ``kwargs``: temperature (K), platform."""
    if str(name).endswith(".toml") or Path(name).is_file():
        if not str(name).endswith(".toml"):
            raise ValueError(f"{name} is not a system file; give a .toml system file (docs/systems.md) or a built-in "
                             f"name: {', '.join(known_systems())}")
        return load_system_file(name, **kwargs)
    name = ALIASES.get(str(name), str(name))
    if name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    files = system_files()
    if name not in files:
        raise ValueError(f"unknown system {name!r}; known systems: {', '.join(known_systems())}, or give the path of "
                         "a system file (FILE.toml, docs/systems.md)")
    return load_system_file(files[name], **kwargs)
