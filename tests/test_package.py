"""Package hygiene: light import, leaf modules, explicit public API."""

import ast
import subprocess
import sys
from pathlib import Path

import rewardlab

SRC = Path(rewardlab.__file__).parent


def test_import_rewardlab_does_not_load_heavy_dependencies():
    code = ("import sys, rewardlab, rewardlab.scoring, rewardlab.serving; heavy = [m for m in ('torch', 'transformers', "
            "'accelerate', 'datasets', 'matplotlib', 'fastapi', 'uvicorn', 'httpx', 'trl', 'ray')"
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


LAYERS = {
    # what each part of the package may import from the others: imports flow one way (docs/design.md, "Layers")
    "errors": set(), "extras": {"errors"}, "lazy": set(), "losses": set(), "metrics": set(), "devices": set(), "control": set(), "jsonsafe": set(), "plotting": set(),
    "config": {"errors"},
    "data": {"plotting", "errors", "config", "metrics", "jsonsafe", "extras"},
    "models": {"data", "errors", "config", "devices", "losses", "extras"},
    "judges": {"data", "errors", "config", "models", "metrics"},
    "scoring": {"lazy", "jsonsafe", "data", "errors", "config", "devices", "losses", "metrics", "models", "judges", "control"},
    "labeling": {"data", "errors", "config", "models", "scoring", "judges"},
    "search": {"plotting", "data", "errors", "config", "metrics", "scoring", "labeling"},
    "overopt": {"plotting", "data", "errors", "config", "scoring", "search", "jsonsafe", "training", "labeling", "judges"},
    "evaluation": {"plotting", "data", "errors", "config", "metrics", "models", "scoring", "jsonsafe"},
    "training": {"data", "errors", "config", "devices", "losses", "metrics", "models", "evaluation"},
    "demo": {"data", "errors", "metrics", "scoring", "training"},
    "serving": {"data", "errors", "config", "scoring", "monitor", "extras"},
    "monitor": {"lazy", "data", "errors", "config", "scoring", "jsonsafe", "plotting", "overopt", "labeling"},
    "rlhf": {"lazy", "data", "errors", "config", "scoring", "jsonsafe", "plotting", "overopt", "labeling", "monitor", "control",
             "serving", "training", "judges", "models", "metrics", "devices", "extras"},
    "distributed": {"data", "errors", "config", "scoring", "labeling", "extras"},
    "cli": None,  # the entry points may use every part
}


def _package_imports(source: str, parts: tuple[str, ...]) -> set[str]:
    """Top-level parts of rewardlab that the module at ``parts`` (e.g. ``("search", "beam")``) imports, lazily too."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(parts[: len(parts) - node.level])  # the package the relative import starts from
            target = base + (node.module.split(".") if node.module else [])
            names = [target] if node.module else [base + [alias.name] for alias in node.names]
            found.update(t[0] for t in names if t and not t[0].startswith("__"))  # `from .. import __version__`
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rewardlab."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("rewardlab."))
    return found


def test_imports_flow_one_way_between_the_parts_of_the_package():
    seen = set()
    for path in SRC.rglob("*.py"):
        part = path.relative_to(SRC).with_suffix("").parts[0]
        if part == "__init__":
            continue
        assert part in LAYERS, f"{part} has no place in the layer map of tests/test_package.py"
        seen.add(part)
        allowed = LAYERS[part]
        if allowed is None:
            continue
        wrong = _package_imports(path.read_text(), path.relative_to(SRC).with_suffix("").parts) - allowed - {part}
        assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)}, which {part} may not (allowed: {sorted(allowed)})"
    assert seen == set(LAYERS) - {"errors"} or seen == set(LAYERS)


def test_layer_check_catches_a_wrong_way_import():
    lazy = "def f():\n    from ..training.loop import train\n    from . import beam\n    import rewardlab.serving.app\n"
    assert _package_imports(lazy, ("search", "probe")) == {"training", "search", "serving"}
    assert _package_imports("from ...errors import ConfigError\n", ("scoring", "sub", "x")) == {"errors"}
    assert "training" not in LAYERS["search"]


LEAVES = {"errors", "extras", "lazy", "losses", "metrics", "devices", "control", "jsonsafe", "plotting", "config"}


def test_design_md_layer_table_is_the_enforced_one():
    """docs/design.md's layer table and LAYERS say the same: every part's non-leaf imports, and which parts are leaves."""
    import re

    text = (SRC.parents[1] / "docs" / "design.md").read_text()
    section = text[text.index("## Layout and import direction"):]
    section = section[: section.index("\n## ", 5)]
    documented = {}
    for row in re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, flags=re.M):
        part = row[0].removesuffix("/").removesuffix(".py")
        cell = row[1].strip()
        documented[part] = None if cell == "everything" else set(re.findall(r"`([^`]+)`", cell))
    enforced = {part: None if allowed is None else set(allowed) - LEAVES for part, allowed in LAYERS.items() if part not in LEAVES}
    assert documented == enforced
    leaves_line = re.search(r"Leaves \(([^)]*)\)", section).group(1)
    assert set(re.findall(r"`([^`]+)`", leaves_line)) == LEAVES == {p for p, a in LAYERS.items() if a is not None and a <= {"errors"}}


def test_design_md_names_every_scoring_module():
    text = (SRC.parents[1] / "docs" / "design.md").read_text()
    table = text[text.index("| `scoring/protocol.py`"):]
    table = table[: table.index("\n\n")]
    for path in (SRC / "scoring").glob("*.py"):
        if path.name != "__init__.py":
            assert f"`scoring/{path.name}`" in table, path.name
