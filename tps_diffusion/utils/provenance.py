"""What produced a result: software versions, and values made JSON-safe for manifests."""

from __future__ import annotations

import importlib
import math
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__


def versions(*modules: str) -> dict[str, str]:
    """Versions of tps_diffusion, numpy, Python and the platform, plus each importable ``module``
    (e.g. ``"torch"``, ``"openmm"``, ``"mdtraj"``); modules that are not installed are left out."""
    out = {"tps_diffusion": __version__, "numpy": np.__version__, "python": sys.version.split()[0],
           "platform": platform.platform()}
    for name in modules:
        try:
            out[name] = importlib.import_module(name).__version__
        except (ImportError, AttributeError):
            continue
    return out


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy arrays/scalars, tuples and paths turned into JSON types (NaN and +-inf -> None)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.ndarray, np.generic)) or hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
