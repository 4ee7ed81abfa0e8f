# famefabric: one image for the sentinel and the agents; the entrypoint is the CLI.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 fame \
    && mkdir -p /data \
    && chown fame /data

USER 10001
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["fame"]
CMD ["sentinel"]
