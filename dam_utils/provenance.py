"""Where a result came from: code commit, library versions, device, time.

Every checkpoint and every artifact carries :func:`environment_info`, so a number in the
book can be traced to the code, machine and versions that produced it.
"""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from typing import Any

import numpy as np
import torch

from .paths import REPO_ROOT


def git_commit() -> dict[str, Any]:
    """HEAD commit of the repository and whether ``dam_utils/`` had uncommitted changes."""
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD") or None
        dirty = bool(run("status", "--porcelain", "--", "dam_utils"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dam_utils_dirty": dirty}


def device_name(device: str | torch.device) -> str:
    """Human-readable name of the device that ran a computation."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def environment_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Versions, device and commit, for manifests and checkpoints."""
    return {
        "device": str(torch.device(device)),
        "device_name": device_name(device),
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "platform": platform.platform(),
        **git_commit(),
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
