# famefabric: one image for the sentinel and the agents; the entrypoint is the CLI.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FAME_DATA_DIR=/data

WORKDIR /app
# Dependencies first, pinned by the lock: a change of src/ does not reinstall them.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 10001 fame \
    && mkdir -p /data \
    && chown fame /data

USER 10001
VOLUME ["/data"]
EXPOSE 8000
# The sentinel's health endpoint (services running an agent disable this in compose).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/fame/v1/attach/health', timeout=2)"]
ENTRYPOINT ["fame"]
CMD ["sentinel"]
