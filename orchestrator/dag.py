"""The job graph on networkx: edges run from a dependency to the job that needs it."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Protocol

import networkx as nx


class _HasDeps(Protocol):
    dependencies: tuple[str, ...]


def build_graph(jobs: Mapping[str, _HasDeps]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(jobs)
    graph.add_edges_from((dep, job_id) for job_id, job in jobs.items() for dep in job.dependencies)
    return graph


class Dag:
    """Read-only queries the planner and the coordinator need, computed once per workflow."""

    def __init__(self, jobs: Mapping[str, _HasDeps]) -> None:
        self.graph = build_graph(jobs)

    def find_cycle(self) -> list[str] | None:
        """A cycle as a path that ends where it starts (``["a", "b", "a"]``), or None."""
        graph = self.graph
        if nx.is_directed_acyclic_graph(graph):  # linear; find_cycle alone is quadratic on a large DAG
            return None
        # Search only inside a strongly connected component that holds a cycle: small, and certain.
        for component in nx.strongly_connected_components(graph):
            node = next(iter(component))
            if len(component) > 1 or graph.has_edge(node, node):
                edges = nx.find_cycle(graph.subgraph(component))
                return [edges[0][0], *(v for _, v in edges)]
        return None  # pragma: no cover - a graph that is not a DAG has such a component

    @cached_property
    def order(self) -> list[str]:
        """A topological order, stable for a given file (ties broken by file order)."""
        position = {job_id: i for i, job_id in enumerate(self.graph.nodes)}
        return list(nx.lexicographical_topological_sort(self.graph, key=position.__getitem__))

    def parents(self, job_id: str) -> Iterable[str]:
        return self.graph.pred[job_id]

    def children(self, job_id: str) -> Iterable[str]:
        return self.graph.succ[job_id]

    def ancestors(self, job_ids: Iterable[str]) -> set[str]:
        """Every job some of ``job_ids`` depends on, directly or not (excluding ``job_ids``)."""
        return self._walk(job_ids, self.graph.pred) - set(job_ids)

    def descendants(self, job_ids: Iterable[str]) -> set[str]:
        return self._walk(job_ids, self.graph.succ) - set(job_ids)

    def with_descendants(self, job_ids: Iterable[str]) -> set[str]:
        return self._walk(job_ids, self.graph.succ)

    @staticmethod
    def _walk(start: Iterable[str], adjacency: Mapping[str, Mapping[str, object]]) -> set[str]:
        """One breadth-first walk from many sources: a closure costs O(V + E), not O(V) walks."""
        seen = set(start)
        queue = deque(seen)
        while queue:
            for nxt in adjacency[queue.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.graph
