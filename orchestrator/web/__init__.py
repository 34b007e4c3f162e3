"""The run-level web view (``executioner web``): runs list, run page with its DAG, job logs, actions
(confirmed after their dry run, CSRF-protected, audited with the signed-in user) and a JSON API."""
