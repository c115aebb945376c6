"""The layers of the package: the core is torch only, the torch potentials need no OpenMM, and no
module imports a private name from another module."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tps_diffusion"


def imported_modules(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", ["import tps_diffusion.core", "import tps_diffusion.potentials",
                                       "import tps_diffusion.utils.files, tps_diffusion.utils.seeds"])
def test_lower_layers_import_neither_openmm_nor_mdtraj(statement):
    modules = imported_modules(statement)
    assert "tps_diffusion.core" in modules or "tps_diffusion.potentials" in modules or "tps_diffusion.utils" in modules
    assert not {m for m in modules if m.split(".")[0] in ("openmm", "mdtraj")}
    assert not {m for m in modules
                if m.startswith(("tps_diffusion.molecular", "tps_diffusion.handoff", "tps_diffusion.cli"))}


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("tps_diffusion", ".")) or (
                    isinstance(node, ast.ImportFrom) and node.level > 0):
                offenders += [f"{path.relative_to(PACKAGE)}: {a.name}" for a in node.names
                              if a.name.startswith("_") and a.name != "__version__"]
    assert offenders == []
