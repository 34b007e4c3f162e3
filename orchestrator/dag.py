"""The job graph: edges run from a dependency to the job that needs it.

Plain insertion-ordered dicts carry what every command needs (order, parents, children, closures):
``status`` and ``resume`` plan on them without importing networkx (~90 ms of a command's start).
networkx names the cycle when there is one — a refused file, where a clear message matters more.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Protocol


class _HasDeps(Protocol):
    dependencies: tuple[str, ...]


class Dag:
    """Read-only queries the planner and the coordinator need, computed once per workflow."""

    def __init__(self, jobs: Mapping[str, _HasDeps]) -> None:
        # Insertion order is file order; a dependency named twice is one edge; an unknown one is a
        # node of its own (the loader reports it), as networkx's DiGraph would have it. Parents and
        # children are tuples (a job's own ``dependencies`` when it names each once; the empty tuple
        # is shared): a dict per job and direction was a tenth of a 100,000-job coordinator's memory.
        pred: dict[str, tuple[str, ...]] = {}
        # Whether every job comes after its dependencies in the file (most files do): then the
        # file's order is the topological order below, found without a heap over 100,000 jobs.
        self._file_order_is_topological = True
        known = pred.__contains__
        for job_id, job in jobs.items():
            deps = tuple(job.dependencies)
            if len(deps) > 1:
                unique = tuple(dict.fromkeys(deps))
                deps = deps if len(unique) == len(deps) else unique
            if self._file_order_is_topological and deps and not all(map(known, deps)):
                self._file_order_is_topological = False  # (pred holds the jobs before this one)
            pred[job_id] = deps
        if not self._file_order_is_topological:
            for deps in list(pred.values()):
                for dep in deps:
                    pred.setdefault(dep, ())  # an unknown dependency, after every job
        self.pred = pred

    @cached_property
    def succ(self) -> dict[str, tuple[str, ...]]:
        """Each job's children. Built when first asked (the coordinator, a closure): a resume plan
        and ``status`` only walk parents, and this was a third of the graph's cost."""
        children: dict[str, list[str]] = {}
        for job_id, deps in self.pred.items():
            for dep in deps:
                if dep in children:
                    children[dep].append(job_id)
                else:
                    children[dep] = [job_id]
        return {job_id: tuple(children[job_id]) if job_id in children else () for job_id in self.pred}

    @cached_property
    def _kahn(self) -> list[str]:
        """Kahn's algorithm, always taking the earliest job in the file among those ready: the same
        order as networkx's ``lexicographical_topological_sort`` keyed by file position. Shorter
        than the graph when there is a cycle."""
        if self._file_order_is_topological:
            # The earliest ready job is then always the next one in the file.
            return list(self.pred)
        position = {job_id: i for i, job_id in enumerate(self.pred)}
        waiting = {job_id: len(parents) for job_id, parents in self.pred.items()}
        ready = [position[j] for j, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        names = list(self.pred)
        order: list[str] = []
        while ready:
            job_id = names[heapq.heappop(ready)]
            order.append(job_id)
            for child in self.succ[job_id]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, position[child])
        return order

    def find_cycle(self) -> list[str] | None:
        """A cycle as a path that ends where it starts (``["a", "b", "a"]``), or None."""
        if len(self._kahn) == len(self.pred):  # linear; most files have no cycle
            return None
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(self.pred)
        graph.add_edges_from((dep, job_id) for job_id, deps in self.pred.items() for dep in deps)
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
        order = self._kahn
        if len(order) != len(self.pred):
            raise ValueError("the job graph has a cycle")  # the loader refuses such files first
        return order

    def parents(self, job_id: str) -> Iterable[str]:
        return self.pred[job_id]

    def children(self, job_id: str) -> Iterable[str]:
        return self.succ[job_id]

    def ancestors(self, job_ids: Iterable[str]) -> set[str]:
        """Every job some of ``job_ids`` depends on, directly or not (excluding ``job_ids``)."""
        return self._walk(job_ids, self.pred) - set(job_ids)

    def descendants(self, job_ids: Iterable[str]) -> set[str]:
        return self._walk(job_ids, self.succ) - set(job_ids)

    def with_descendants(self, job_ids: Iterable[str]) -> set[str]:
        return self._walk(job_ids, self.succ)

    @staticmethod
    def _walk(start: Iterable[str], adjacency: Mapping[str, Iterable[str]]) -> set[str]:
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
        return job_id in self.pred
