"""Upper bounds on what a user may ask for: past them a value is a typo or an attack.

Kept apart from the loader and the CLI so both use the same numbers without importing each other
(the CLI stays light). Time bounds live with the retry policy (``workers.retry.MAX_SECONDS``), which
workers deployed alone also need.
"""

MAX_RETRIES = 1000
MAX_BACKOFF = 100.0
MAX_PARALLEL = 10_000  # jobs in flight at once (a thread each on the local executor)
MAX_CATCHUP = 1000
MAX_COMMAND_BYTES = 128 * 1024 - 1  # Linux refuses a longer single argument (MAX_ARG_STRLEN)
MAX_TEXT = 4096  # names, paths, queues
MAX_ID = 2**31 - 1  # run and attempt ids are 32-bit integers in every supported database
MAX_LIST = 100_000  # rows one `runs --limit` may ask for
