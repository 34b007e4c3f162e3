"""``python -m workers [celery worker options]``: a worker on a machine with only the workers package.

Settings come from the environment (EXECUTIONER_BROKER_URL, ...), as for ``executioner worker``.
"""

import sys

from workers.celery_app import create_app
from workers.settings import WorkerSettings


def main() -> None:
    create_app(WorkerSettings.from_env()).worker_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
