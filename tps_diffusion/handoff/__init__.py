"""Hand-off of transition paths to other programs: files for enhanced sampling and path sampling.

Everything here takes an :class:`mdtraj.Trajectory` (full topology, positions in nm) and writes
files that other programs read:

* :mod:`.path_frames` -- :func:`equally_spaced_frames`, frames equally spaced in RMSD along the
  path, and :func:`consecutive_rmsd`;
* :mod:`.plumed` -- :func:`write_plumed_path`, a PLUMED ``PATHMSD`` reference PDB plus a
  ``plumed.dat`` snippet;
* :mod:`.images` -- :func:`write_string_images`, string-method / NEB images (PDB, HDF5, DCD, XTC,
  TRR or NetCDF);
* :mod:`.state_xml` -- :func:`write_state_xml`, OpenMM ``State`` XML files for
  ``Simulation.loadState``;
* :mod:`.ops` -- :func:`to_openpathsampling` and :func:`write_ops_storage`, an initial trajectory
  and engine for OpenPathSampling (optional dependency).

Units at the API: nm, ps, kelvin, kJ/mol. The PLUMED PDB is the one exception, because PLUMED's
PDB reader expects Angstrom (it multiplies by 0.1 to get its internal nm).

Every file goes through :mod:`tps_diffusion.utils.files`: written to a temporary file and renamed
into place, and an existing file is only replaced with ``overwrite=True``.
"""

from .images import write_string_images
from .ops import OPS_INSTALL, OPSHandoff, to_openpathsampling, write_ops_storage
from .path_frames import consecutive_rmsd, equally_spaced_frames, resolve_atom_indices
from .plumed import LAMBDA_FACTOR, write_plumed_path
from .state_xml import write_state_xml

__all__ = [
    "consecutive_rmsd",
    "equally_spaced_frames",
    "resolve_atom_indices",
    "LAMBDA_FACTOR",
    "write_plumed_path",
    "write_string_images",
    "write_state_xml",
    "OPS_INSTALL",
    "OPSHandoff",
    "to_openpathsampling",
    "write_ops_storage",
]
