"""Running a sentinel as a process: until a stop signal, with logging configured."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable

from famefabric.log_limits import install_repeat_filter
from famefabric.observability import tracing
from famefabric.observability.logs import configure_logging
from famefabric.security import TokenVerifier
from famefabric.security.tls import server_context_from_env
from famefabric.sentinel.admission import listening_host
from famefabric.sentinel.admission_limits import AdmissionLimits
from famefabric.sentinel.cluster import ClusterSettings
from famefabric.sentinel.limits import SentinelLimits
from famefabric.sentinel.server import Sentinel
from famefabric.settings import FabricSettings

log = logging.getLogger("famefabric.sentinel")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def serve_sentinel(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    system_id: str | None = None,
    show_envelopes: bool = False,
    idle_timeout: float | None = 90.0,
    stop: asyncio.Event | None = None,
    limits: SentinelLimits | None = None,
    connection_limits: AdmissionLimits | None = None,
    verifier: TokenVerifier | None = None,
    tls: ssl.SSLContext | None = None,
    cluster: ClusterSettings | None = None,
) -> None:
    """Run a sentinel until SIGINT or SIGTERM arrives, or until ``stop`` is set.

    On either, the sentinel closes every child with 1000 and returns normally.

    Args:
        host: interface to listen on.
        port: TCP port (0 picks a free one).
        system_id: the sentinel's id; default :func:`default_sentinel_id`.
        show_envelopes: print every envelope (``FAME_SHOW_ENVELOPES``).
        idle_timeout: seconds of silence after which a child is closed.
        stop: an event that stops the sentinel when set.
        limits: the sentinel's limits (default: :class:`SentinelLimits`).
        connection_limits: connection limit and backlog (default: :class:`AdmissionLimits`).
        verifier: checks attach tokens (§17); None for open mode.
        tls: listen with TLS using this context (§17.6).
        cluster: the cluster to join (None: none).

    Raises:
        ConfigurationError: the port cannot be bound or the id is invalid.
    """
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, _stopper(stop, signum))
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or no signal support on this platform
        installed.append(signum)
    try:
        async with Sentinel(
            system_id=system_id,
            host=host,
            port=port,
            show_envelopes=show_envelopes,
            idle_timeout=idle_timeout,
            limits=limits,
            connection_limits=connection_limits,
            verifier=verifier,
            tls=tls,
            cluster=cluster,
        ):
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def run_sentinel(
    *,
    log_level: str = "info",
    host: str | None = None,
    port: int | None = None,
    system_id: str | None = None,
    show_envelopes: bool | None = None,
    max_connections: int | None = None,
    backlog: int | None = None,
    auth_secret_file: str | None = None,
    cluster_url: str | None = None,
    insecure: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Configure logging and run :func:`serve_sentinel` in a new event loop.

    Identical warnings beyond ``FAME_LOG_REPEAT_BURST`` are counted, not
    written (:mod:`famefabric.log_limits`). Uses uvloop when it is installed. Returns normally after SIGINT/SIGTERM.
    What is not given is read from the environment, once, here:
    ``FAME_LISTENER_PORT`` (default 8000), ``FAME_NODE_ID``,
    ``FAME_SHOW_ENVELOPES``, the ``FAME_SENTINEL_*`` limits
    (:mod:`famefabric.sentinel.limits`), the token settings of
    :meth:`famefabric.security.TokenVerifier.from_env` (``FAME_AUTH_SECRET``
    or ``auth_secret_file``, ``FAME_JWKS_URL``…) and the ``FAME_CLUSTER_*`` settings
    (:mod:`famefabric.sentinel.cluster.settings`; ``cluster_url`` wins over
    ``FAME_CLUSTER_URL``), and the connection limit and backlog
    (:mod:`famefabric.sentinel.admission_limits`; ``max_connections`` and
    ``backlog`` win over theirs).

    ``host`` None listens on 0.0.0.0 when tokens are verified and on
    127.0.0.1 otherwise; another interface without authentication needs
    ``insecure`` (:func:`~famefabric.sentinel.admission.listening_host`).

    Raises:
        ConfigurationError: ``log_level`` is not a logging level name, or the
            sentinel cannot start.
    """
    configure_logging(log_level)
    if logging.getLogger().level > logging.DEBUG:
        # websockets logs every HTTP exchange (each health check) and every closed
        # connection at INFO; the sentinel logs attaches and detaches itself.
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    install_repeat_filter()
    tracing.setup("famefabric-sentinel")
    env = FabricSettings.from_env()
    port = env.listener_port if port is None else port
    system_id = env.node_id if system_id is None else system_id
    show_envelopes = env.show_envelopes if show_envelopes is None else show_envelopes
    limits = SentinelLimits.from_env()
    connection_limits = AdmissionLimits.from_env(max_connections=max_connections, backlog=backlog)
    verifier = TokenVerifier.from_env(secret_file=auth_secret_file)
    tls = server_context_from_env(cert_file=tls_cert, key_file=tls_key)
    host = listening_host(host, authenticated=verifier is not None, insecure=insecure)
    cluster = ClusterSettings.from_env(url=cluster_url)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop  # optional: the "fast" extra
    except ImportError:
        pass
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(
            serve_sentinel(
                host=host,
                port=port,
                system_id=system_id,
                show_envelopes=show_envelopes,
                limits=limits,
                connection_limits=connection_limits,
                verifier=verifier,
                tls=tls,
                cluster=cluster,
            )
        )


def _stopper(stop: asyncio.Event, signum: signal.Signals) -> Callable[[], None]:
    def on_signal() -> None:
        log.info("received %s, shutting down", signum.name)
        stop.set()

    return on_signal
