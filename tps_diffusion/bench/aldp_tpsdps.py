"""TPS-DPS's alanine-dipeptide protocol (section ``tpsdps_protocol`` of ``bench aldp``).

The three metrics of TPS-DPS (Seong et al., arXiv 2405.19961; code github sjeong9760/tps-dps),
computed their way on our paths and on a steered-MD baseline, with energies re-evaluated under
their simulation set-up. What their set-up and metrics are, and the files that say so, is written
into the report (:data:`PROTOCOL`); in short:

* set-up (``src/dynamics/dynamics.py``, class ``Aldp``): ``amber99sbildn.xml``, ``PME`` with a
  1 nm cutoff, ``HBonds`` constraints, Ewald error tolerance 5e-4, on the 22 solute atoms alone
  in a periodic box (no water; the box edge 2.558 nm is issue 11's figure) -- :func:`tpsdps_system`;
* both end structures are minimised under that set-up when the simulations are built
  (``src/dynamics/base.py``); the target is the minimised C7ax;
* a path is cut at its frame closest to the target by heavy-atom (mass > 1.1 Da) Kabsch RMSD; the
  saved path is frames ``0..cut`` where frame 0 is the start (``src/dps.py``);
* RMSD: heavy-atom Kabsch RMSD at the cut (Angstrom), mean and std (ddof 1) over all paths;
* hit: ``dphi^2 + dpsi^2 < 0.75^2`` rad^2 at the cut, with periodic differences to the target's
  angles, ``phi`` over atoms (1, 6, 8, 14) and ``psi`` over (6, 8, 14, 16) (``src/utils/utils.py``,
  ``aldp_diff``) -- :func:`tpsdps_hit`. Their ``phi`` starts at the ACE methyl carbon (atom 1),
  not at the ACE carbonyl carbon (atom 4) of the IUPAC phi: a pseudo-dihedral a few degrees off
  phi (see :data:`PHI_ATOMS`);
* ETS: mean (std ddof 1) over hitting paths of the largest potential energy of frames ``0..cut``,
  absolute kJ/mol of the periodic system (``src/utils/metrics.py``).

Energies: our paths are sampled in vacuum with flexible X-H bonds; their frames are evaluated as
they are in the PME system (as TPS-DPS's ``energy_function`` evaluates its own frames). Under
``HBonds`` OpenMM drops the X-H stretch terms, so those energies are absent. A PME evaluation
costs ~0.9 ms on the Reference platform (the 21^3 grid), ~25x an energy without periodic
images, so the largest PME energy up to the cut is found exactly as follows: a screen energy
``E_screen = E_vacuum - E_XH`` (the path's own vacuum energies minus the X-H stretch terms =
the same force field with HBonds and no periodic images, computed without OpenMM) ranks the
frames, and the PME energy is evaluated on every frame within ``margin`` kJ/mol of the path's
highest screen energy. The maximum found is the true maximum whenever the difference
``E_PME - E_screen`` (interaction with the periodic images, ~0.1 kJ/mol for a neutral
dipeptide) varies by less than ``margin`` along the path; the report gives the spread observed
on every evaluated frame, and a few paths are also evaluated on every frame up to the cut as a
check (``exact_check``).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from ..molecular.system import MolecularSystem
from .path_metrics import NM_TO_ANGSTROM, kabsch_rmsd

__all__ = ["HIT_RADIUS_RAD", "PHI_ATOMS", "PROTOCOL", "PSI_ATOMS", "PUBLISHED", "TARGETS", "TPSDPS_BOX_NM",
           "ProtocolScorer", "dihedral_angles", "heavy_atoms", "periodic_difference", "pme_parameters",
           "protocol_section", "run_steered", "tpsdps_angles", "tpsdps_hit", "tpsdps_system", "xh_bond_energy"]

#: periodic box edge of TPS-DPS's alanine dipeptide set-up, nm (issue 11)
TPSDPS_BOX_NM = 2.558
#: TPS-DPS's "phi": ACE CH3 (1) - ALA N (6) - CA (8) - C (14) (0-based, the standard 22-atom order);
#: the IUPAC phi starts at the ACE carbonyl C (4) instead
PHI_ATOMS = (1, 6, 8, 14)
#: TPS-DPS's psi: ALA N (6) - CA (8) - C (14) - NME N (16) (the IUPAC psi)
PSI_ATOMS = (6, 8, 14, 16)
#: hit: dphi^2 + dpsi^2 < HIT_RADIUS_RAD^2 (strict)
HIT_RADIUS_RAD = 0.75

_REPO = "github sjeong9760/tps-dps"

#: what TPS-DPS's alanine-dipeptide protocol is, and where it is written (copied into the report)
PROTOCOL = {
    "sources": {
        f"{_REPO} src/dynamics/dynamics.py (class Aldp, setup)":
            "ForceField('amber99sbildn.xml'); createSystem(pdb.topology, nonbondedMethod=PME, nonbondedCutoff=1 nm, "
            "constraints=HBonds, ewaldErrorTolerance=0.0005); openmmtools VVVRIntegrator(300 K, friction, 1 fs), "
            "constraint tolerance 1e-5; the bias is a CustomExternalForce on every atom (zero when energies are "
            "evaluated)",
        f"{_REPO} src/dynamics/base.py (BaseDynamics)":
            "the structure data/<molecule>/<state>.pdb is minimised (simulation.minimizeEnergy()) when the "
            "simulation is built, so start and target are the minimised c5 and c7ax; heavy atoms = mass > 1.1 Da; "
            "energy_function: context.setPositions(frame), absolute potential energy in kJ/mol, frame by frame",
        f"{_REPO} src/dps.py (DiffusionPathSampler.sample, TargetMeasure.relaxed_indicator)":
            "a path holds the start (frame 0) and num_steps frames; cut = argmax over frames of "
            "-mean((x - target)^2)/(2 sigma^2) after Kabsch superposition of the heavy atoms, i.e. the frame with "
            "the smallest heavy-atom RMSD; the saved path is positions[:cut + 1]",
        f"{_REPO} src/utils/metrics.py (Metric)":
            "rmsd: heavy-atom Kabsch RMSD of the last saved frame (= the cut) to the target, x10 (Angstrom), mean and "
            "torch std (ddof 1) over all paths; thp: hit = psi_diff^2 + phi_diff^2 < 0.75^2 (aldp), percent of all "
            "paths; ets: for hitting paths the largest potential energy over the saved frames 0..cut, mean and "
            "std (ddof 1), kJ/mol, absolute",
        f"{_REPO} src/utils/utils.py (aldp_diff, compute_dihedral)":
            "phi over atoms [1, 6, 8, 14], psi over [6, 8, 14, 16] (0-based); difference |a - a_target| mod 2 pi, "
            "folded to [0, pi]",
        f"{_REPO} src/sample.py, src/eval.py (defaults)":
            "start c5, end c7ax, num_steps 1000, timestep 1 fs, temperature 300 K, friction 0.001/fs, 64 paths",
        "github LarsHoldijk/SOCTransitionPaths potentials/alanine_md.py, potentials/files/AD_c7ax.pdb (PIPS)":
            "the set-up TPS-DPS adopts (its dynamics.py cites this repository): the same createSystem call; the PDB "
            "holds the 22 solute atoms only, with a CRYST1 box (2.0233 nm in PIPS's file): vacuum in a periodic "
            "box, no water",
    },
    "not_found": "TPS-DPS's own data/alanine/{c5,c7ax}.pdb are not in the stored copy of the repository, so the "
                 "2.558 nm box edge is issue 11's figure and the c7ax structure itself is not compared here",
    "setup": "amber99sbildn, PME, 1 nm cutoff, Ewald error tolerance 5e-4, HBonds, the 22 solute atoms alone in a "
             "periodic cubic box (no water: the periodic images of the dipeptide are its only environment)",
    "target": "C7ax minimised under the set-up",
    "cut": "per path, among the start (frame 0) and the recorded frames, the frame with the smallest heavy-atom "
           "Kabsch RMSD to the target (the first on ties)",
    "rmsd": "heavy-atom Kabsch RMSD at the cut, Angstrom; mean and std (ddof 1) over all paths",
    "hit": "dphi^2 + dpsi^2 < 0.75^2 rad^2 at the cut, periodic differences to the target's angles; phi over atoms "
           "(1, 6, 8, 14) = ACE CH3-N-CA-C (TPS-DPS's definition, a few degrees off the IUPAC C-N-CA-C), psi over "
           "(6, 8, 14, 16)",
    "ets": "mean (std ddof 1) over hitting paths of the largest potential energy of frames 0..cut, kJ/mol, absolute "
           "energy of the periodic system (not relative to a minimum; e_c5_min_kj_mol gives the minimised C5 under "
           "the same set-up to read it as a height)",
}

#: Published values (NOT measured by this benchmark).
PUBLISHED = {
    "note": "published values copied from the literature, not measured by this benchmark",
    "source": "Seong et al., arXiv 2405.19961 (TPS-DPS); Blessing et al., arXiv 2508.12511, Table 1",
    "protocol": "alanine dipeptide C5 -> C7ax, amber99sbildn, PME 1 nm in a 2.558 nm box, HBonds, 300 K, 1 ps paths "
                "(1,000 x 1 fs), 64 paths; hit = dphi^2 + dpsi^2 < 0.75^2 rad^2 at the cut frame; ETS = mean over "
                "hitting paths of the largest potential energy up to the cut, kJ/mol",
    "methods": {
        "TPS-DPS": {"rmsd_angstrom_mean": 0.47, "hit_percent": 39.6, "ets_kj_mol_mean": 46.3},
        "TR-LV": {"rmsd_angstrom_mean": 0.29, "hit_percent": 61.3, "ets_kj_mol_mean": 49.1},
        "PIPS": {"rmsd_angstrom_mean": 0.66, "hit_percent": 43.8, "ets_kj_mol_mean": 28.2},
        "steered MD": {"rmsd_angstrom_mean": 0.56, "hit_percent": 54.7, "ets_kj_mol_mean": 78.4},
    },
}

#: issue 11's targets for this project on TPS-DPS's protocol
TARGETS = {"rmsd_angstrom_max": 0.2, "hit_percent_min": 95.0, "ets_kj_mol_max": 30.0, "source": "issue 11"}


# ---------------------------------------------------------------------------------------------
# angles and the hit criterion


def dihedral_angles(xyz, quad) -> np.ndarray:
    """Dihedral angle (rad, in (-pi, pi], IUPAC sign) over the atoms ``quad`` of every frame.

    ``xyz``: ``(T, n_atoms, 3)`` or ``(n_atoms, 3)`` nm; returns ``(T,)`` (or a float for one frame).
    """
    x = np.asarray(xyz, dtype=np.float64)
    single = x.ndim == 2
    x = x[None] if single else x
    p0, p1, p2, p3 = (x[:, int(i)] for i in quad)
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * (b1 * n2).sum(-1)
    a = np.arctan2(y, (n1 * n2).sum(-1))
    return float(a[0]) if single else a


def tpsdps_angles(xyz) -> tuple[np.ndarray, np.ndarray]:
    """TPS-DPS's (phi, psi) in rad of every frame (:data:`PHI_ATOMS`, :data:`PSI_ATOMS`)."""
    return dihedral_angles(xyz, PHI_ATOMS), dihedral_angles(xyz, PSI_ATOMS)


def periodic_difference(a, b) -> np.ndarray:
    """``|a - b|`` folded onto ``[0, pi]`` (angles in rad)."""
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) % (2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def tpsdps_hit(xyz, target, radius: float = HIT_RADIUS_RAD):
    """TPS-DPS's hit: ``dphi^2 + dpsi^2 < radius^2`` between each frame of ``xyz`` and ``target``.

    ``xyz``: ``(T, n_atoms, 3)`` nm (or one frame ``(n_atoms, 3)``: a bool); ``target``
    ``(n_atoms, 3)`` nm; angles of :func:`tpsdps_angles`, differences of :func:`periodic_difference`.
    """
    phi, psi = tpsdps_angles(xyz)
    tphi, tpsi = tpsdps_angles(np.asarray(target, dtype=np.float64))
    hit = periodic_difference(phi, tphi) ** 2 + periodic_difference(psi, tpsi) ** 2 < float(radius) ** 2
    return bool(hit) if np.ndim(hit) == 0 else hit


# ---------------------------------------------------------------------------------------------
# their OpenMM set-up


def tpsdps_system(system: MolecularSystem, box_nm: float = TPSDPS_BOX_NM, platform: str = "Reference",
                  forcefield: str = "amber99sbildn.xml") -> MolecularSystem:
    """TPS-DPS's alanine-dipeptide set-up for the solute of ``system``: ``forcefield`` with PME
    (1 nm cutoff, Ewald error tolerance 5e-4) and HBonds constraints, in a cubic periodic box of
    edge ``box_nm`` without water. Same atoms and order as ``system``; its ``potential_energy``
    and ``minimize`` evaluate under that set-up (``platform``)."""
    if not (np.isfinite(box_nm) and box_nm > 2.0):
        raise ValueError(f"the box edge must exceed twice the 1 nm cutoff; got {box_nm} nm")
    topology = app.Modeller(system.topology, system.positions * unit.nanometer).topology  # a copy
    edge = float(box_nm)
    topology.setPeriodicBoxVectors([openmm.Vec3(edge, 0, 0), openmm.Vec3(0, edge, 0), openmm.Vec3(0, 0, edge)])
    omm = app.ForceField(forcefield).createSystem(topology, nonbondedMethod=app.PME,
                                                  nonbondedCutoff=1.0 * unit.nanometer, constraints=app.HBonds,
                                                  ewaldErrorTolerance=0.0005)
    return MolecularSystem(topology, omm, system.positions, temperature=system.temperature, platform=platform,
                           name=f"{system.name}_tpsdps_pme",
                           info={"forcefield": forcefield, "nonbonded": "PME", "cutoff_nm": 1.0, "box_nm": edge,
                                 "constraints": "HBonds", "ewald_error_tolerance": 0.0005, "solvent": "none"})


def heavy_atoms(system: MolecularSystem) -> np.ndarray:
    """Indices of the atoms heavier than 1.1 Da (TPS-DPS's heavy atoms)."""
    omm = system.openmm_system
    return np.flatnonzero([omm.getParticleMass(i).value_in_unit(unit.dalton) > 1.1 for i in range(system.n_atoms)])


def pme_parameters(setup: MolecularSystem) -> list[float]:
    """``[alpha (1/nm), nx, ny, nz]`` the PME of ``setup`` uses."""
    ctx = setup.make_context()
    for f in setup.openmm_system.getForces():
        if isinstance(f, openmm.NonbondedForce):
            return [float(v) for v in f.getPMEParametersInContext(ctx)]
    raise ValueError("the set-up has no NonbondedForce")


def _xh_bonds(system: MolecularSystem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harmonic bond terms of ``system`` with a hydrogen: pairs ``(B, 2)``, r0 (nm), k (kJ/mol/nm^2)."""
    hydrogen = np.array([a.element is not None and a.element.symbol == "H" for a in system.topology.atoms()])
    pairs, r0, k = [], [], []
    for f in system.openmm_system.getForces():
        if isinstance(f, openmm.HarmonicBondForce):
            for b in range(f.getNumBonds()):
                i, j, length, kb = f.getBondParameters(b)
                if hydrogen[i] or hydrogen[j]:
                    pairs.append((i, j))
                    r0.append(length.value_in_unit(unit.nanometer))
                    k.append(kb.value_in_unit(unit.kilojoule_per_mole / unit.nanometer**2))
    return np.array(pairs, dtype=int).reshape(-1, 2), np.array(r0), np.array(k)


def _bond_energy(bonds: tuple[np.ndarray, np.ndarray, np.ndarray], xyz) -> np.ndarray:
    pairs, r0, k = bonds
    x = np.asarray(xyz, dtype=np.float64)
    if not len(pairs):
        return np.zeros(len(x))
    r = np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1)
    return (0.5 * k * (r - r0) ** 2).sum(-1)


def xh_bond_energy(system: MolecularSystem, xyz) -> np.ndarray:
    """Energy ``(T,)`` kJ/mol of the harmonic X-H bond terms of ``system`` in every frame of ``xyz``
    ``(T, n_atoms, 3)`` nm: the terms a set-up with HBonds constraints does not have."""
    return _bond_energy(_xh_bonds(system), xyz)


# ---------------------------------------------------------------------------------------------
# scoring paths chunk by chunk


def _mean_std(v) -> tuple[float | None, float | None]:
    v = np.asarray(v, dtype=np.float64)
    if not len(v):
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


class ProtocolScorer:
    """TPS-DPS's metrics of a set of paths, fed chunk by chunk (:meth:`add`), reported by :meth:`summary`.

    Parameters
    ----------
    system : the sampling system (vacuum): its X-H bond terms define the screen energy
    setup : TPS-DPS's set-up (:func:`tpsdps_system`)
    target : ``(n_atoms, 3)`` nm, the target (C7ax minimised under ``setup``)
    start : ``(n_atoms, 3)`` nm, the start structure of every path (frame 0 of the protocol)
    e_start : force-field energy of ``start`` in ``system`` (our energy of frame 0), kJ/mol
    heavy : atoms of the cut and the RMSD (mass > 1.1 Da)
    margin : kJ/mol: the PME energy is evaluated on every frame within ``margin`` of a path's
        highest screen energy up to the cut
    exact_paths : this many hitting paths are also evaluated under ``setup`` on every frame up to
        the cut (a check of the screening)
    """

    def __init__(self, system: MolecularSystem, setup: MolecularSystem, target, start, e_start: float, heavy,
                 margin: float = 4.0, exact_paths: int = 0):
        self.system, self.setup, self.margin, self.exact_paths = system, setup, float(margin), int(exact_paths)
        self.target = np.asarray(target, dtype=np.float64)
        self.start = np.asarray(start, dtype=np.float64)
        self.e_start = float(e_start)
        self.heavy = np.asarray(heavy, dtype=int)
        self.xh = _xh_bonds(system)
        self.cut, self.rmsd, self.hit, self.ets_ours, self.ets_theirs = [], [], [], [], []
        self.delta_min, self.delta_max, self.n_pme, self.n_frames = np.inf, -np.inf, 0, 0
        self.exact = []  # (screened max, exact max) per checked path
        self.seconds = 0.0

    def add(self, xyz, energies) -> None:
        """Score ``P`` paths: ``xyz`` ``(P, T, n_atoms, 3)`` nm (or a list of Trajectories) without the
        start, ``energies`` ``(P, T)`` kJ/mol their force-field energies in the sampling system."""
        t0 = time.perf_counter()
        e = np.asarray(energies, dtype=np.float64)
        for p in range(len(e)):
            frames = np.asarray(xyz[p].xyz if hasattr(xyz[p], "xyz") else xyz[p], dtype=np.float64)
            full = np.concatenate([self.start[None], frames])
            e_full = np.concatenate([[self.e_start], e[p]])
            if len(e_full) != len(full):
                raise ValueError(f"path {p} has {len(frames)} frames but {len(e[p])} energies")
            rmsd = kabsch_rmsd(full, self.target, self.heavy)
            cut = int(np.argmin(rmsd))
            upto = full[:cut + 1]
            screen = e_full[:cut + 1] - _bond_energy(self.xh, upto)
            cand = np.flatnonzero(screen >= screen.max() - self.margin)
            e_pme = self.setup.potential_energy(upto[cand])
            delta = e_pme - screen[cand]
            self.delta_min, self.delta_max = min(self.delta_min, delta.min()), max(self.delta_max, delta.max())
            self.n_pme += len(cand)
            self.n_frames += cut + 1
            hit = tpsdps_hit(full[cut], self.target)
            if hit and len(self.exact) < self.exact_paths:
                every = self.setup.potential_energy(upto)
                self.n_pme += len(upto)
                self.exact.append((float(e_pme.max()), float(every.max())))
            self.cut.append(cut)
            self.rmsd.append(float(rmsd[cut] * NM_TO_ANGSTROM))
            self.hit.append(hit)
            self.ets_ours.append(float(e_full[:cut + 1].max()))
            self.ets_theirs.append(float(e_pme.max()))
        self.seconds += time.perf_counter() - t0

    def summary(self, frame_ps: float, e_c5_min_theirs: float, e_c5_min_ours: float) -> dict:
        """The metrics (JSON-ready). ``frame_ps``: time between recorded frames; ``e_c5_min_*``: the
        minimised C5 under TPS-DPS's set-up and in the sampling system (heights above it are reported too)."""
        if not self.hit:
            raise ValueError("no paths were scored")
        hit = np.array(self.hit, dtype=bool)
        cut = np.array(self.cut)
        theirs, ours = np.array(self.ets_theirs), np.array(self.ets_ours)
        rmsd_mean, rmsd_std = _mean_std(self.rmsd)
        ets_mean, ets_std = _mean_std(theirs[hit])
        ours_mean, ours_std = _mean_std(ours[hit])
        spread = float(self.delta_max - self.delta_min)
        exact = np.array(self.exact).reshape(-1, 2)
        return {
            "n_paths": int(len(hit)),
            "n_hits": int(hit.sum()),
            "hit_percent": float(100.0 * hit.mean()),
            "rmsd_angstrom_mean": rmsd_mean,
            "rmsd_angstrom_std": rmsd_std,
            "ets_kj_mol_mean": ets_mean,
            "ets_kj_mol_std": ets_std,
            "ets_above_c5_min_kj_mol_mean": None if ets_mean is None else ets_mean - e_c5_min_theirs,
            "ets_ours_kj_mol_mean": ours_mean,
            "ets_ours_kj_mol_std": ours_std,
            "ets_ours_above_c5_min_kj_mol_mean": None if ours_mean is None else ours_mean - e_c5_min_ours,
            "max_energy_to_cut_all_paths_kj_mol_mean": float(theirs.mean()),
            "cut_frame_mean": float(cut.mean()),
            "cut_time_ps_mean": float(cut.mean() * frame_ps),
            "cut_at_start": int((cut == 0).sum()),
            "energy_screening": {
                "margin_kj_mol": self.margin,
                "pme_minus_screen_kj_mol_min": float(self.delta_min),
                "pme_minus_screen_kj_mol_max": float(self.delta_max),
                "pme_minus_screen_spread_kj_mol": spread,
                "certified": bool(spread < self.margin),
                "n_pme_evaluations": int(self.n_pme),
                "n_frames_up_to_cut": int(self.n_frames),
                "exact_check_paths": int(len(exact)),
                "exact_check_max_abs_difference_kj_mol": float(np.abs(exact[:, 0] - exact[:, 1]).max())
                if len(exact) else None,
                "seconds": self.seconds,
            },
        }


def run_steered(sample: Callable[[int, int], object], n_paths: int, chunk_paths: int,
                on_chunk: Callable[[object], None]) -> None:
    """Sample ``n_paths`` in chunks of ``chunk_paths``: ``sample(n, chunk)`` returns a PathSet that
    ``on_chunk`` consumes (the caller keeps what it needs; the chunk is dropped afterwards)."""
    done, chunk = 0, 0
    while done < n_paths:
        n = min(chunk_paths, n_paths - done)
        ps = sample(n, chunk)
        on_chunk(ps)
        del ps
        done += n
        chunk += 1


def protocol_section(setup: MolecularSystem, target: np.ndarray, methods: dict, e_c5_min: float,
                     e_c7ax_min: float, sampling_target: np.ndarray, heavy, differences: str) -> dict:
    """The report section ``tpsdps_protocol``: the protocol and its sources, the set-up, the
    target, the per-method metrics (``methods``: name -> :meth:`ProtocolScorer.summary` + extras),
    issue 11's targets (met or not, for the geodesic paths) and the published anchors."""
    phi, psi = tpsdps_angles(target)
    geo = methods.get("geodesic")
    met = None
    if geo is not None:
        met = {"rmsd": geo["rmsd_angstrom_mean"] <= TARGETS["rmsd_angstrom_max"],
               "hit": geo["hit_percent"] >= TARGETS["hit_percent_min"],
               "ets": geo["ets_kj_mol_mean"] is not None and geo["ets_kj_mol_mean"] <= TARGETS["ets_kj_mol_max"]}
    return {
        "protocol": {**PROTOCOL, "differences_from_published": differences},
        "setup": {**setup.info, "platform": setup.platform_name(), "n_constraints": setup.n_constraints,
                  "pme_alpha_per_nm_and_grid": pme_parameters(setup)},
        "energies": "our frames (vacuum, flexible X-H bonds) evaluated as they are in the PME set-up (no constraint "
                    "projection), which has no X-H stretch terms; largest PME energy up to the cut found by screening "
                    "(module tps_diffusion.bench.aldp_tpsdps): PME evaluated on every frame whose screen energy (our "
                    "vacuum energy minus the X-H stretch terms) is within margin_kj_mol of the path's highest; exact "
                    "when pme_minus_screen varies by less than the margin",
        "target": {"structure": "our C7ax minimum (systems/alanine_dipeptide/C7ax_min.pdb) minimised under the set-up "
                                "(L-BFGS, tolerance 10 kJ/mol/nm as simulation.minimizeEnergy())",
                   "phi_tpsdps_deg": float(np.degrees(phi)), "psi_deg": float(np.degrees(psi)),
                   "heavy_rmsd_to_vacuum_minimum_angstrom":
                       float(kabsch_rmsd(target, sampling_target, heavy)[0] * NM_TO_ANGSTROM)},
        "e_c5_min_kj_mol": e_c5_min,
        "e_c7ax_min_kj_mol": e_c7ax_min,
        "methods": methods,
        "targets": {**TARGETS, "met_by_geodesic": met},
        "published": PUBLISHED,
    }
