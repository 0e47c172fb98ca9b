"""The layering of the code base, read from the source (no Spark): no import cycle, no
stage importing another stage, the lower layer importing no stage; every table named
through the catalog; docs/tables.md rendered from the catalog."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx

from custseg import catalog
from custseg.stage import STAGES

from .conftest import ROOT

SRC = ROOT / "src" / "custseg"
# modules above the stages: the registry and runner, the command line, and the services
# that work on a whole warehouse (comparing runs, erasing a person)
TOP = {"custseg.pipeline", "custseg.cli", "custseg.compare", "custseg.forget"}
STAGE_PACKAGES = {f"custseg.{s}" for s in STAGES}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The custseg modules ``path`` imports, anywhere in the file (deferred and
    TYPE_CHECKING imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def _graph() -> nx.DiGraph:
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for name, path in paths.items():
        for target in _imports(path, set(paths)):
            if target != name:
                graph.add_edge(name, target)
    return graph


def _stage_of(module: str) -> str | None:
    return next((p for p in STAGE_PACKAGES if module == p or module.startswith(p + ".")), None)


def test_no_import_cycle() -> None:
    graph = _graph()
    # a package's __init__ re-exporting its modules is not a cycle of meaning
    graph.remove_edges_from([(a, b) for a, b in list(graph.edges) if b.startswith(a + ".")])
    assert list(nx.simple_cycles(graph)) == []


def test_stages_import_only_the_contract_and_lower_modules() -> None:
    wrong = []
    for a, b in _graph().edges:
        stage_a, stage_b = _stage_of(a), _stage_of(b)
        if stage_a and stage_b and stage_a != stage_b:
            wrong.append(f"{a} imports {b} (another stage)")
        if stage_a and b in TOP:
            wrong.append(f"{a} imports {b} (above the stages)")
        if not stage_a and a not in TOP and (stage_b or b in TOP):
            wrong.append(f"{a} (a lower module) imports {b}")
    assert wrong == []


def test_the_graph_sees_a_stage_importing_another() -> None:
    # the check above reads real imports: a stage's runner imports the contract module
    graph = _graph()
    assert ("custseg.segment.runner", "custseg.stage") in graph.edges
    assert ("custseg.pipeline", "custseg.segment.runner") in graph.edges


def test_the_registry_runs_the_stages_of_the_contract() -> None:
    from custseg.pipeline import stage_names

    assert stage_names() == list(STAGES)
    assert all((SRC / s / "runner.py").exists() for s in STAGES)


_TABLE_LITERAL = re.compile(r"[\"']((?:bronze|silver|gold|meta)\.[a-z_]+)[\"']")


def test_tables_are_named_through_the_catalog() -> None:
    literals = [
        f"{p.relative_to(ROOT)}: {m.group(1)}"
        for p in SRC.rglob("*.py")
        if p.name != "catalog.py"
        for m in _TABLE_LITERAL.finditer(p.read_text())
    ]
    assert literals == []


def test_catalog_entries() -> None:
    assert {t.layer for t in catalog.TABLES.values()} == {*catalog.LAYERS, catalog.META}
    assert all(t.owner in (*STAGES, "pipeline", "forget") for t in catalog.TABLES.values())
    assert all(t.meaning.endswith(".") and t.meaning[0].isupper() for t in catalog.TABLES.values())
    assert catalog.owned_by("stitch") == [
        catalog.IDENTITY_MAP,
        catalog.IDENTITY_LINKS,
        catalog.CUSTOMERS,
        catalog.IDENTITY_ID_CHANGES,
        catalog.STITCH_GUARDED_KEYS,
    ]
    # PII only in bronze and the silver identity tables
    assert {t.layer for t in catalog.TABLES.values() if t.pii} <= {"bronze", "silver"}


def test_docs_tables_is_the_catalog_rendered() -> None:
    doc = ROOT / "docs" / "tables.md"
    assert doc.read_text() == catalog.render_markdown(), (
        "docs/tables.md is stale: python -m custseg.catalog > docs/tables.md"
    )
