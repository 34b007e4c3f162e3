"""Where each job of a DAG is drawn on the run page: a pure, layered (Sugiyama-style) layout.

Layers are topological generations (networkx): a job sits one column right of its deepest parent.
Within a column, jobs are ordered by the mean row of their parents (one barycenter sweep), which
removes most crossings of pipeline-shaped DAGs at a cost linear in the edges. Graphviz would do
better on dense graphs, but it is a binary to install on every machine that serves the page; a
2,000-job DAG lays out here in a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

NODE_W, NODE_H = 150, 26  # a node's box, in SVG units
COL_GAP, ROW_GAP = 50, 12
MARGIN = 10
LABEL_CHARS = 20  # longer ids are cut in the box (the full id is in its tooltip and the table)


@dataclass(frozen=True, slots=True)
class Node:
    job_id: str
    x: int
    y: int
    label: str


@dataclass(frozen=True, slots=True)
class Edge:
    parent: str
    child: str
    path: str  # the SVG path: a cubic curve from the parent's right side to the child's left


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layout(parents: Mapping[str, Iterable[str]]) -> Layout:
    """``parents``: each job's dependencies (every one a key of the mapping), in file order."""
    graph = nx.DiGraph()
    graph.add_nodes_from(parents)
    graph.add_edges_from((p, j) for j, deps in parents.items() for p in deps)
    rows: dict[str, float] = {}
    columns: list[list[str]] = []
    for generation in nx.topological_generations(graph):
        # Stable: ties keep file order (the generation lists nodes in insertion order).
        ordered = sorted(generation, key=lambda j: _barycenter(graph, j, rows))
        for row, job_id in enumerate(ordered):
            rows[job_id] = row
        columns.append(ordered)
    nodes: dict[str, Node] = {}
    for col, members in enumerate(columns):
        for row, job_id in enumerate(members):
            x = MARGIN + col * (NODE_W + COL_GAP)
            y = MARGIN + row * (NODE_H + ROW_GAP)
            nodes[job_id] = Node(job_id, x, y, _label(job_id))
    edges = [Edge(p, c, _curve(nodes[p], nodes[c])) for p, c in graph.edges]
    tallest = max((len(m) for m in columns), default=0)
    width = 2 * MARGIN + len(columns) * (NODE_W + COL_GAP) - (COL_GAP if columns else 0)
    height = 2 * MARGIN + tallest * (NODE_H + ROW_GAP) - (ROW_GAP if tallest else 0)
    return Layout(list(nodes.values()), edges, max(width, 0), max(height, 0))


def _barycenter(graph: nx.DiGraph, job_id: str, rows: Mapping[str, float]) -> float:
    parents = [rows[p] for p in graph.predecessors(job_id)]
    return sum(parents) / len(parents) if parents else -1.0  # roots first, in file order


def _label(job_id: str) -> str:
    return job_id if len(job_id) <= LABEL_CHARS else job_id[: LABEL_CHARS - 1] + "…"


def _curve(a: Node, b: Node) -> str:
    x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
    x2, y2 = b.x, b.y + NODE_H // 2
    mid = (x1 + x2) // 2
    return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
