"""The import graph of ``roomserver``: no cycles, dependencies point down.

Built with grimp from the source (every ``import``, also those inside functions;
``if TYPE_CHECKING:`` imports are left out, they never run). A lazy import inside a
function is still an import: hiding a cycle in one does not pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grimp
import pytest

# Top to bottom; modules of one layer may import each other and anything below,
# never anything above (directly or through other modules). Modules not named here
# (client.py, the SDK) are checked only for cycles.
LAYERS: list[tuple[str, ...]] = [
    ("roomserver.cli",),
    ("roomserver.server",),
    ("roomserver.api", "roomserver.web", "roomserver.media_glue", "roomserver.announce"),
    ("roomserver.appkeys",),
    ("roomserver.gateway",),
    ("roomserver.handlers", "roomserver.reminders", "roomserver.report_ready"),
    ("roomserver.node",),
    (
        "roomserver.fanout",
        "roomserver.webhooks",
        "roomserver.metrics",
        "roomserver.buswatch",
        "roomserver.gcpolicy",
        "roomserver.media",
        "roomserver.store",
        "roomserver.behaviour_log",
        "roomserver.behaviour_writer",
    ),
    # config parses settings with core's rules (webhook endpoint specs); nothing below
    # needs it: the bus and the rules are handed their values.
    ("roomserver.core", "roomserver.config"),
    ("roomserver.bus",),
    (
        "roomserver.protocol",
        "roomserver.auth",
        "roomserver.tenancy",
        "roomserver.logsafe",
        "roomserver.background",
    ),
]

# Pure rules do no I/O: these never appear below roomserver.core.
CORE_FORBIDDEN = ("asyncio", "aiohttp", "redis", "websockets", "aiortc", "socket")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "roomserver", include_external_packages=True, exclude_type_checking_imports=True, cache_dir=None
    )


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative),
    plus modules importing themselves: every import cycle is inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, todo = work[-1]
            if todo:
                w = todo.pop()
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, sorted(edges.get(w, ()))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1 or v in edges.get(v, ()):
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_cycles() -> None:
    # The check below can fail: a lazy two-module cycle and a longer one are found.
    assert cycles({"a": ["b"], "b": ["a"], "c": ["a"]}) == [["a", "b"]]
    assert cycles({"n": ["h"], "h": ["m"], "m": ["n"], "x": []}) == [["h", "m", "n"]]
    assert cycles({"a": ["a"]}) == [["a"]]
    assert cycles({"a": ["b"], "b": ["c"], "c": []}) == []


def test_roomserver_has_no_import_cycle(graph: grimp.ImportGraph) -> None:
    own = {m for m in graph.modules if m == "roomserver" or m.startswith("roomserver.")}
    edges = {m: [w for w in graph.find_modules_directly_imported_by(m) if w in own] for m in own}
    found = cycles(edges)
    described = []
    for component in found:
        first, second = component[0], component[1] if len(component) > 1 else component[0]
        there = graph.find_shortest_chain(importer=first, imported=second)
        back = graph.find_shortest_chain(importer=second, imported=first)
        described.append(f"{' -> '.join(there or ())} and back {' -> '.join(back or ())}")
    assert not found, "import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize("upper_index", range(len(LAYERS) - 1))
def test_dependencies_point_down(graph: grimp.ImportGraph, upper_index: int) -> None:
    wrong = []
    for upper in LAYERS[upper_index]:
        for lower_layer in LAYERS[upper_index + 1 :]:
            for lower in lower_layer:
                chain = graph.find_shortest_chain(importer=lower, imported=upper, as_packages=True)
                if chain:
                    wrong.append(" -> ".join(chain))
    assert not wrong, f"imports pointing up to {LAYERS[upper_index]}:\n" + "\n".join(wrong)


def test_core_does_no_io(graph: grimp.ImportGraph) -> None:
    wrong = []
    for name in CORE_FORBIDDEN:
        if name not in graph.modules:
            continue
        chain = graph.find_shortest_chain(importer="roomserver.core", imported=name, as_packages=True)
        if chain:
            wrong.append(" -> ".join(chain))
    assert not wrong, "core/ reaches I/O:\n" + "\n".join(wrong)
