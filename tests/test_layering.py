"""The import layering of the package, checked on the source of every module.

Layers (STYLE.md, "Layers"), one folder each: data, numerics, runtime (bottom)
-> models (models.sites: the model-neutral layer description) and hardware (they meet
only through models.sites) and decode -> evaluation (genome spaces, the population
evaluator) -> train, retrain -> search -> settings -> orchestration -> experiments.
Nothing imports upward (:data:`ALLOWED`, every folder); models import nothing from
hardware/, search/ or evaluation/, hardware no model file, and no library module
imports experiments/; no module sits at the package root.

Imports are read with ``ast`` from every ``mohaq_jax/**/*.py`` (new modules are
covered without listing them), including imports inside functions; only imports under
``if TYPE_CHECKING:`` are skipped, as they never run.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mohaq_jax"

BOTTOM = ("mohaq_jax.data", "mohaq_jax.numerics", "mohaq_jax.runtime")
SITES = ("mohaq_jax.models.sites",)
MODELS = BOTTOM + ("mohaq_jax.models",)
EVALUATION = MODELS + ("mohaq_jax.hardware", "mohaq_jax.evaluation")
TRAINING = EVALUATION + ("mohaq_jax.decode", "mohaq_jax.train", "mohaq_jax.retrain")
SEARCH = TRAINING + ("mohaq_jax.search",)
SETTINGS = SEARCH + ("mohaq_jax.settings",)

#: layer (module prefix) -> the only project modules (prefixes) it may import: every
#: folder of the package, from the bottom (data, numerics, runtime) up to the
#: orchestration of the experiments.
ALLOWED = {
    "mohaq_jax.data": BOTTOM,
    "mohaq_jax.numerics": BOTTOM,
    "mohaq_jax.runtime": BOTTOM,
    "mohaq_jax.models": MODELS,
    "mohaq_jax.hardware": BOTTOM + SITES + ("mohaq_jax.hardware",),
    "mohaq_jax.decode": BOTTOM + ("mohaq_jax.decode",),
    "mohaq_jax.evaluation": EVALUATION,
    "mohaq_jax.train": TRAINING,
    "mohaq_jax.retrain": TRAINING,
    "mohaq_jax.search": SEARCH,
    "mohaq_jax.settings": SETTINGS,
    "mohaq_jax.adapt": SETTINGS + ("mohaq_jax.adapt",),
    "mohaq_jax.orchestration": ("mohaq_jax",),
}

#: Top-level folders of the repository that no library module may import.
NOT_LIBRARY = ("experiments", "benchmarks", "tests")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module the source imports at run time, absolute (``from a import b``
    gives ``a`` and ``a.b``, as ``b`` may be a submodule); relative imports resolved
    against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name != "mohaq_jax":  # `from mohaq_jax import x` names only x
                found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def library_imports() -> dict[str, set[str]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        out[module] = imported_modules(
            path.read_text(encoding="utf-8"), module, path.name == "__init__.py"
        )
    return out


@pytest.fixture(scope="module")
def imports():
    return library_imports()


def test_every_module_is_read(imports):
    # New modules are found by the walk, not by a list (spot-check a few).
    for module in (
        "mohaq_jax.models.sites",
        "mohaq_jax.models.sru",
        "mohaq_jax.hardware.base",
        "mohaq_jax.data.assemble",
        "mohaq_jax.decode.fit",
        "mohaq_jax.settings.config_checks",
    ):
        assert module in imports
    assert len(imports) > 60


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_nothing_above_them(imports, layer):
    bad = sorted(
        f"{module} imports {name}"
        for module, names in imports.items()
        if _within(module, (layer,))
        for name in names
        if name.startswith("mohaq_jax.") and not _within(name, ALLOWED[layer])
    )
    assert bad == []


def test_models_and_hardware_meet_only_through_sites(imports):
    forbidden = {
        "mohaq_jax.models": (
            "mohaq_jax.hardware",
            "mohaq_jax.search",
            "mohaq_jax.evaluation",
        ),
        "mohaq_jax.hardware": ("mohaq_jax.models",),
    }
    allowed = {  # the one module the two share
        "mohaq_jax.hardware": ("mohaq_jax.models.sites",),
    }
    bad = sorted(
        f"{module} imports {name}"
        for layer, banned in forbidden.items()
        for module, names in imports.items()
        if _within(module, (layer,))
        for name in names
        if _within(name, banned) and not _within(name, allowed.get(layer, ()))
    )
    assert bad == []


def test_no_library_module_imports_experiments(imports):
    bad = sorted(
        f"{module} imports {name}"
        for module, names in imports.items()
        for name in names
        if _within(name, NOT_LIBRARY)
    )
    assert bad == []


@pytest.mark.parametrize(
    "testcase_name, source, module, expected",
    [
        (
            "lazy_import_in_a_function",
            "def f():\n    from mohaq_jax.hardware import base\n",
            "mohaq_jax.models.x",
            {"mohaq_jax.hardware", "mohaq_jax.hardware.base"},
        ),
        (
            "relative_import",
            "from ..hardware import silago\n",
            "mohaq_jax.models.x",
            {"mohaq_jax.hardware", "mohaq_jax.hardware.silago"},
        ),
        (
            "package_root",
            "from mohaq_jax import genome\nimport experiments.search\n",
            "mohaq_jax.models.x",
            {"mohaq_jax.genome", "experiments.search"},
        ),
        (
            "type_checking_only",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from mohaq_jax.genome import GenomeSpace\nelse:\n    import json\n",
            "mohaq_jax.hardware.x",
            {"typing", "typing.TYPE_CHECKING", "json"},
        ),
    ],
)
def test_the_import_reader(testcase_name, source, module, expected):
    assert imported_modules(source, module) == expected, testcase_name


def test_every_module_lives_in_a_layer(imports):
    """No module at the package root besides ``__init__``: each folder is a layer."""
    loose = sorted(m for m in imports if m.count(".") == 1 and _top(m) not in ALLOWED)
    assert loose == []


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])
