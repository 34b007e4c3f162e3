"""``python -m orchestrator.cli``: the same command as ``executioner`` (used by the scheduler)."""

from orchestrator.cli.main import main

main()
