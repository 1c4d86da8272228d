# The newsagg image: one image for the init job, the worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# tzdata's zone.tab: extraction reads a site's time zone from its country domain.
RUN apt-get update && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, pinned, so code changes do not reinstall them.
COPY constraints.txt ./
RUN grep -vE '^(mypy|mypy_extensions|ruff|pytest|iniconfig|pluggy|pathspec|types-|librt|py-spy|pyinstrument)' constraints.txt > /tmp/runtime.txt \
 && pip install --no-cache-dir -r /tmp/runtime.txt

COPY pyproject.toml README.md schema.sql ./
COPY migrations ./migrations
COPY workers ./workers
COPY schedules ./schedules
# Editable install: schema.sql and schedules/ are read from /app at run time.
RUN pip install --no-cache-dir --no-deps -e . \
 && useradd --create-home --uid 10001 newsagg
USER newsagg
# Prometheus metrics of a worker (NEWSAGG_METRICS_PORT); Flower, when run from this image.
EXPOSE 9810 5555

ENTRYPOINT ["newsagg"]
CMD ["--help"]
