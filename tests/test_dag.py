"""The job graph on plain dicts agrees with networkx, which it stopped importing on the hot path."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.dag import Dag


@dataclass
class J:
    dependencies: tuple[str, ...]


@st.composite
def graphs(draw, acyclic: bool):
    n = draw(st.integers(1, 30))
    names = draw(st.permutations([f"j{i}" for i in range(n)]))  # file order is not name order
    jobs = {}
    for i, name in enumerate(names):
        pool = names[:i] if acyclic else names
        deps = draw(st.lists(st.sampled_from(pool), max_size=4)) if pool else []
        jobs[name] = J(tuple(deps))  # duplicates kept: one edge
    if acyclic and draw(st.booleans()):
        # A file that names some jobs before their dependencies: the order takes the heap's way.
        shuffled = draw(st.permutations(list(jobs)))
        jobs = {name: jobs[name] for name in shuffled}
    return jobs


def _nx(jobs) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(jobs)
    graph.add_edges_from((d, j) for j, job in jobs.items() for d in job.dependencies)
    return graph


@settings(max_examples=300, deadline=None)
@given(graphs(acyclic=True))
def test_order_parents_children_and_closures_match_networkx(jobs):
    dag, graph = Dag(jobs), _nx(jobs)
    position = {j: i for i, j in enumerate(jobs)}
    assert dag.order == list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
    assert dag.find_cycle() is None
    for j in jobs:
        assert list(dag.parents(j)) == list(graph.pred[j])
        assert list(dag.children(j)) == list(graph.succ[j])
        assert dag.ancestors([j]) == nx.ancestors(graph, j)
        assert dag.descendants([j]) == nx.descendants(graph, j)


@settings(max_examples=300, deadline=None)
@given(graphs(acyclic=False))
def test_a_cycle_is_found_exactly_when_networkx_sees_one_and_it_is_a_real_cycle(jobs):
    dag, graph = Dag(jobs), _nx(jobs)
    cycle = dag.find_cycle()
    assert (cycle is None) == nx.is_directed_acyclic_graph(graph)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert all(graph.has_edge(a, b) for a, b in itertools.pairwise(cycle))


def test_a_file_in_dependency_order_is_its_own_order_and_one_job_out_of_place_is_not():
    in_order = {"a": J(()), "b": J(("a",)), "c": J(("a",)), "d": J(("c", "b"))}
    assert Dag(in_order).order == ["a", "b", "c", "d"]
    out_of_place = {"d": J(("c", "b")), "a": J(()), "b": J(("a",)), "c": J(("a",))}
    assert Dag(out_of_place).order == ["a", "b", "c", "d"]


def test_an_unknown_dependency_is_a_node_and_a_self_loop_is_a_cycle():
    dag = Dag({"a": J(("ghost",)), "b": J(("b",))})
    assert "ghost" in dag and list(dag.children("ghost")) == ["a"]
    assert dag.find_cycle() == ["b", "b"]
