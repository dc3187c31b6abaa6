"""The import structure (the rule in `prediff.cli`'s docstring): the CLI starts light, every module imports on its
own, the network package never imports prediff, and nothing below the CLI imports it."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: folder → import name (editable install: prediff_cli/ is `prediff`, models/ is `prediff_models`)
PACKAGES = {"prediff_cli": "prediff", "models": "prediff_models"}
HEAVY = ("mindspore", "netCDF4", "matplotlib", "scipy", "xarray")


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_the_cli_starts_without_the_heavy_libraries():
    out = _python("import prediff.cli.app, sys; "
                  f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert out == "[]", f"importing prediff.cli.app loads {out}; import them inside the command function"


def test_every_module_imports():
    code = """
import importlib, json, pkgutil, traceback
failed, names = {}, []
for package in ("prediff", "prediff_models"):
    names.append(package)
    root = importlib.import_module(package)
    names += [m.name for m in pkgutil.walk_packages(root.__path__, package + ".",
                                                    onerror=lambda name: failed.setdefault(name, "walk failed"))]
for name in names:
    if name.rsplit(".", 1)[-1] == "__main__":  # `python -m prediff` runs the CLI
        continue
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps({"count": len(names), "failed": failed}))
"""
    result = json.loads(_python(code))
    assert result["count"] > 50
    assert result["failed"] == {}


def _modules():
    """(import name, path) of every module under the two source folders."""
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([name] + parts), path


def _imported(module: str, path: Path):
    """Absolute names of the modules `path` imports (relative imports resolved), anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_network_package_never_imports_prediff():
    found = [(module, name) for module, path in _modules() if _under(module, "prediff_models")
             for name in _imported(module, path) if _under(name, "prediff")]
    assert found == []


def test_nothing_below_the_cli_imports_it():
    allowed = ("prediff.cli", "prediff.__main__")  # the CLI itself and `python -m prediff`
    found = [(module, name) for module, path in _modules()
             if not any(_under(module, a) for a in allowed)
             for name in _imported(module, path) if _under(name, "prediff.cli")]
    assert found == []


def test_importing_prediff_sets_the_runtime_environment_and_keeps_the_users_values():
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "OMP_WAIT_POLICY", "GLOG_v")}
    code = ("import os, prediff; print([os.environ.get(k) for k in "
            "('ONEDNN_MAX_CPU_ISA', 'OMP_WAIT_POLICY', 'GLOG_v')])")

    def run(extra):
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env={**env, **extra})
        return proc.stdout.strip().splitlines()[-1]

    assert run({}) == "['AVX2', 'PASSIVE', '3']"
    assert run({"OMP_WAIT_POLICY": "ACTIVE"}) == "['AVX2', 'ACTIVE', '3']"
