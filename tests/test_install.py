"""The lock is complete: every distribution installed beside the project is pinned in constraints.txt at the
version installed, so the README's install resolves the same set next year (torch is pinned on the command line;
pip and setuptools come with the virtualenv)."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNPINNED = {"tmpretrain", "torch", "pip", "setuptools", "wheel"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.skipif(sys.platform != "linux", reason="constraints.txt is the Linux lock (CI's); Windows adds colorama")
def test_every_installed_distribution_is_pinned_in_constraints():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    loose = {n: v for n, v in installed.items() if n not in UNPINNED and pins.get(n) != v}
    assert not loose, f"installed but not pinned at this version in constraints.txt (regenerate it): {loose}"
    assert set(pins) <= set(installed), f"pinned but not installed: {sorted(set(pins) - set(installed))}"
