"""Drawing a workflow's DAG as Graphviz dot or Mermaid text."""

from __future__ import annotations

import json

from orchestrator.workflow import Workflow


def to_dot(workflow: Workflow) -> str:
    q = json.dumps  # dot accepts C-style double-quoted ids
    lines = [f"digraph {q(workflow.application_name)} {{", "  rankdir=LR;"]
    lines += [f"  {q(job_id)};" for job_id in workflow.jobs]
    lines += [f"  {q(dep)} -> {q(job.id)};" for job in workflow.jobs.values() for dep in job.dependencies]
    lines.append("}")
    return "\n".join(lines)


def to_mermaid(workflow: Workflow) -> str:
    # Mermaid ids cannot hold '.' or '-': use positional ids and show the real id as the label.
    ids = {job_id: f"j{i}" for i, job_id in enumerate(workflow.jobs)}
    lines = ["graph LR"]
    lines += [f'  {ids[job_id]}["{job_id}"]' for job_id in workflow.jobs]
    lines += [f"  {ids[dep]} --> {ids[job.id]}" for job in workflow.jobs.values() for dep in job.dependencies]
    return "\n".join(lines)
