"""Where the bundled systems live (``systems/`` next to the package source)."""

from __future__ import annotations

import os
from pathlib import Path


def systems_dir() -> Path:
    """Folder of the ready-to-use systems: ``$TPS_DIFFUSION_SYSTEMS`` if set, else ``<repo>/systems``
    (found next to the source, as an editable install has it)."""
    override = os.environ.get("TPS_DIFFUSION_SYSTEMS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "systems"
