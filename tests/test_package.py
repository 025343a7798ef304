"""Package hygiene: light import, leaf modules, explicit public API."""

import ast
import subprocess
import sys
from pathlib import Path

import rewardlab

SRC = Path(rewardlab.__file__).parent


def test_import_rewardlab_does_not_load_heavy_dependencies():
    code = ("import sys, rewardlab; heavy = [m for m in ('torch', 'transformers', 'accelerate', 'datasets', 'matplotlib')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_leaf_modules_import_nothing_from_the_package():
    for leaf in ("losses.py", "metrics.py", "data/records.py"):
        tree = ast.parse((SRC / leaf).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 and not (node.module or "").startswith("rewardlab"), (leaf, node.module)


def test_every_public_name_resolves():
    for name in rewardlab.__all__:
        assert getattr(rewardlab, name) is not None


def test_every_module_declares_all():
    for path in SRC.rglob("*.py"):
        if path.name != "__init__.py" or path.parent == SRC:
            assert "__all__" in path.read_text(), path
