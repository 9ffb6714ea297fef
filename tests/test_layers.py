"""Layering, checked on every module (not a list): what may import what, and what stays free of torch.

Layers, bottom to top; a module imports only from its own package or from lower layers. Packages
that share a layer never import each other (the task rooms ``workflows/stain``, ``workflows/phase``,
``workflows/srqpi`` and ``workflows/focus`` above all).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import virtualstain

PACKAGE = Path(virtualstain.__file__).parent
LAYERS = [
    {"errors", "_version"},
    {"_atomic", "_hardware", "_cache"},
    {"metrics", "optics"},
    {"data", "analysis"},
    {"evaluation"},
    {"report"},
    {"models"},
    {"inference"},
    {"training", "export"},
    {"workflows", "workflows.stain", "workflows.phase", "workflows.srqpi", "workflows.focus"},
    {"cli", "virtualstain"},
]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}
TORCH_FREE = ["data", "metrics", "analysis", "optics", "evaluation", "report", "workflows.phase", "workflows.focus"]


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: its package below ``virtualstain`` (task rooms apart)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "virtualstain"
    if parts[1] == "workflows" and len(parts) > 2:
        return f"workflows.{parts[2]}"
    return parts[1]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("virtualstain", *path.relative_to(PACKAGE).with_suffix("").parts)
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every ``virtualstain`` module that ``path`` imports, including imports inside functions; relative
    imports are resolved, and names imported from the root or from ``workflows`` count as modules."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "virtualstain"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "virtualstain":
                continue
            spread = _unit(target) in ("virtualstain", "workflows")  # names there are packages of their own
            found |= {f"{target}.{a.name}" for a in node.names} if spread else {target}
    return found


def _import_edges() -> list[tuple[str, str, str, str]]:
    """(module, its unit, imported module, that unit) for every import between different units."""
    edges = []
    for module, path in _modules():
        unit = _unit(module)
        for target in _imports(module, path):
            other = _unit(target)
            if other != unit:
                edges.append((module, unit, target, other))
    return edges


def test_every_module_belongs_to_a_layer():
    assert {_unit(m) for m, _ in _modules()} <= set(RANK)


def test_nothing_imports_upward_or_sideways():
    bad = [f"{m} ({u}) imports {t} ({o})" for m, u, t, o in _import_edges()
           if o not in RANK or RANK[o] >= RANK[u]]
    assert not bad, "\n".join(bad)


def test_the_task_rooms_never_import_each_other():
    rooms = {"workflows.stain", "workflows.phase", "workflows.srqpi", "workflows.focus"}
    bad = [f"{m} imports {t}" for m, u, t, o in _import_edges() if u in rooms and o in rooms]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_function_level_and_package_imports(tmp_path):
    """The AST reader resolves what the rules rely on (so a violation cannot hide from it)."""
    folder = tmp_path / "virtualstain" / "workflows" / "stain"
    folder.mkdir(parents=True)
    code = ("from ...data.io import read_image\nfrom ..phase import drymass\nimport virtualstain.models.bundle\n"
            "from ... import __version__\nfrom .. import srqpi\ndef f():\n    from ...training import fit\n")
    (folder / "x.py").write_text(code)
    found = _imports("virtualstain.workflows.stain.x", folder / "x.py")
    assert found == {"virtualstain.data.io", "virtualstain.workflows.phase", "virtualstain.models.bundle",
                     "virtualstain.__version__", "virtualstain.workflows.srqpi", "virtualstain.training"}
    assert {_unit(t) for t in found} == {"data", "workflows.phase", "models", "__version__", "workflows.srqpi",
                                         "training"}


def _torch_free_modules() -> list[str]:
    names = []
    for package in TORCH_FREE:
        module = f"virtualstain.{package}"
        names.append(module)
        folder = PACKAGE.joinpath(*package.split("."))
        names += [f"{module}.{info.name}" for info in pkgutil.walk_packages([str(folder)])]
    return names + ["virtualstain.workflows.stain.segment", "virtualstain.workflows.stain.evaluate"]


@pytest.mark.parametrize("module", _torch_free_modules())
def test_science_layers_and_torch_free_commands_never_import_torch(module):
    code = f"import sys, {module}\nassert 'torch' not in sys.modules, 'torch was imported by {module}'\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_package_and_the_cli_import_without_torch():
    code = "import sys, virtualstain, virtualstain.cli\nassert 'torch' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_segment_and_phase_commands_run_without_loading_torch(tmp_path):
    """Not only importing: running `segment` and `evaluate` with the classical segmenter, `focus` and `phase tie`
    from the command line keeps torch out."""
    code = f"""
import sys
import numpy as np
from virtualstain.cli import main
from virtualstain.data.io import write_tiff
yy, xx = np.mgrid[:64, :64]
cells = np.exp(-((yy - 20.0) ** 2 + (xx - 30.0) ** 2) / 40) + np.exp(-((yy - 45.0) ** 2 + (xx - 40.0) ** 2) / 40)
write_tiff(r"{tmp_path}/n.tif", cells[None].astype(np.float32), pixel_size_um=0.5)
stack = np.stack([1 + 0.1 * cells, 1 - 0.1 * cells, 1 + 0.05 * cells]).astype(np.float32)
write_tiff(r"{tmp_path}/z.tif", stack[:, None], pixel_size_um=0.5)
assert main(["segment", r"{tmp_path}/n.tif", "--out", r"{tmp_path}/labels", "--method", "classical"]) == 0
assert main(["evaluate", r"{tmp_path}/n.tif", r"{tmp_path}/n.tif", "--out", r"{tmp_path}/judged",
             "--segmenter", "classical"]) == 0
assert main(["focus", r"{tmp_path}/z.tif", "--n", "1"]) == 0
assert main(["phase", "tie", r"{tmp_path}/z.tif", "--z-um", "-1,1,2", "--wavelength-um", "0.55",
             "--out", r"{tmp_path}/phase.tif"]) == 0
assert 'torch' not in sys.modules, 'torch was imported'
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
