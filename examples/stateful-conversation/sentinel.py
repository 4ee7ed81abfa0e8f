"""Runs the sentinel on port 8000 (FAME_LISTENER_PORT)."""

from famefabric import run_sentinel

if __name__ == "__main__":
    run_sentinel(log_level="info")
