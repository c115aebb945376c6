"""The molecular layer, on OpenMM and mdtraj: a molecule's system and states, MD samples,
Cartesian features, the molecular model and geodesic, restrained path sampling, committors, two-way shooting and TPS.

    from tps_diffusion.molecular import (Dynamics, MolecularModel, alanine_dipeptide, molecular_geodesic,
                                         run_md, sample_molecular_paths, train_on_samples)

    system = alanine_dipeptide()
    md = run_md(system, ["C5", "C7ax"], n_steps=50_000, report_interval=50, dynamics=Dynamics(seed=0))
    model = train_on_samples(system, md, selection="heavy", checkpoint="aldp.pt")
    geo = molecular_geodesic(model, system, "C5", "C7ax", mode="low_variance")
    paths = sample_molecular_paths(system, model, geo, n_paths=100, steps_per_point=16)
    shots = paths.shoot(system, ["C5", "C7eq"], "C7ax", n_shots=1)   # unbiased reactive trajectories
"""

from .catalogue import alanine_dipeptide, get_system, known_systems, register_system
from .committor import CommittorResult, committor, transition_state_ensemble
from .dynamics import Dynamics
from .featurizer import CartesianFeaturizer
from .formats import load_samples, load_trajectory, write_trajectory
from .geodesic import MolecularGeodesic, molecular_geodesic
from .md import MDResult, run_md
from .model import MolecularModel, featurize_samples, train_on_samples
from .paths import PairPaths, sample_molecular_paths, sample_pair_paths
from .restrained import PathSet, sample_paths
from .shooting import ShootingFrames, ShootingResult, in_states, shooting_frames, two_way_shooting
from .states import RMSD, Angle, Dihedral, Distance, Region, State, StateDefinition, cv_from_dict, state_from_dict
from .system import MolecularSystem

__all__ = [
    "alanine_dipeptide", "get_system", "known_systems", "register_system", "CommittorResult", "committor",
    "transition_state_ensemble", "Dynamics", "CartesianFeaturizer", "load_samples", "load_trajectory",
    "write_trajectory", "MolecularGeodesic", "molecular_geodesic", "MDResult", "run_md", "MolecularModel",
    "featurize_samples", "train_on_samples", "sample_molecular_paths", "PathSet", "sample_paths", "Dihedral",
    "Distance", "State", "MolecularSystem", "Angle", "RMSD", "Region", "StateDefinition", "cv_from_dict",
    "state_from_dict", "ShootingFrames", "ShootingResult", "in_states", "shooting_frames", "two_way_shooting",
    "PairPaths", "sample_pair_paths",
]
