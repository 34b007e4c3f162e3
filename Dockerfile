# One image for every service: coordinator CLI, worker, flower, web view, scheduler, migrations.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 executioner \
    && mkdir -p /data/executioner && chown executioner /data/executioner
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir . && executioner --help > /dev/null

USER executioner
ENV EXECUTIONER_HOME=/data/executioner PYTHONUNBUFFERED=1
CMD ["executioner", "--help"]
