"""What a reproduce run records about its environment: git state, package versions, device.

Everything here is best effort and never raises: a run on a machine without git or without
a GPU still gets a manifest, with ``None`` where a fact could not be read.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions every manifest records (missing ones are recorded as None).
PACKAGES: tuple[str, ...] = (
    "xmodal",
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "safetensors",
    "pillow",
    "scipy",
    "matplotlib",
    "seaborn",
    "papermill",
    "nbformat",
    "ipykernel",
    "scikit-learn",
    "faiss-cpu",
    "sentence-transformers",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (``None`` when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(root: Path) -> dict[str, Any]:
    """Commit, branch and dirty flag of the repository at ``root`` (all None outside git).

    ``dirty`` is True when tracked files differ from the commit; ``untracked`` counts files
    git does not know (ignored ones such as ``runs/`` excluded).
    """
    commit = _git(["rev-parse", "HEAD"], root)
    if commit is None:
        return {"commit": None, "branch": None, "dirty": None, "untracked": None}
    tracked = _git(["status", "--porcelain", "--untracked-files=no"], root)
    untracked = _git(["ls-files", "--others", "--exclude-standard"], root)
    return {
        "commit": commit,
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], root),
        "dirty": bool(tracked) if tracked is not None else None,
        "untracked": len(untracked.splitlines()) if untracked else 0,
    }


def _cpu_name() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict[str, Any]:
    """The accelerator the notebooks will see: CUDA device names or ``cpu`` (with CPU model and cores)."""
    info: dict[str, Any] = {"type": "cpu", "name": _cpu_name(), "cpu_count": os.cpu_count()}
    try:
        import torch  # lazy: optional dependency, ImportError handled
    except ImportError:  # pragma: no cover - torch is a core dependency
        info["torch"] = None
        return info
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        info.update(
            type="cuda",
            name=torch.cuda.get_device_name(0),
            count=n,
            names=[torch.cuda.get_device_name(i) for i in range(n)],
            cuda_version=torch.version.cuda,
        )
    return info


def environment_facts(root: Path) -> dict[str, Any]:
    """Git state, python, platform, package versions and device, as one JSON-able dict."""
    return {
        "git": git_state(root),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_info(),
    }
