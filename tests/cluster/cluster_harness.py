"""Real NATS servers and clustered sentinels for the tests in tests/cluster.

:class:`NatsServer` runs Debian's ``nats-server`` (installed by
``scripts/ensure-nats.sh``) on a free loopback port, alone or as one of a
NATS cluster whose routes are loopback ports too. :class:`ClusterSentinel`
is ``fame sentinel`` joined to a cluster through ``FAME_CLUSTER_*``
variables (never arguments: credentials stay out of ``ps``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from support.pool import ProcessPool
from support.procs import READY_TIMEOUT, ManagedProcess
from support.sentinels import OurSentinel

from famefabric.testing import free_port

NATS_READY = r"Server is ready"
PEER_TIMEOUT = 1.0
"""The sentinels' FAME_CLUSTER_PEER_TIMEOUT in these tests (the default is 2 s)."""


class NatsServer:
    """One ``nats-server`` on 127.0.0.1.

    Args:
        pool: the test's process pool (stops it at teardown).
        binary: the nats-server executable.
        name: label for logs.
        cluster_port: the port of its cluster listener (None: not clustered).
        routes: the other servers' cluster ports.
        extra: further arguments (e.g. ``--user``/``--pass`` from a config file).
    """

    def __init__(
        self,
        pool: ProcessPool,
        binary: str,
        *,
        name: str = "nats",
        cluster_port: int | None = None,
        routes: Sequence[int] = (),
        config: Path | None = None,
    ) -> None:
        self.port = free_port()
        argv: list[str] = [binary, "-a", "127.0.0.1", "-p", str(self.port)]
        if config is not None:
            argv += ["-c", os.fspath(config)]
        if cluster_port is not None:
            argv += ["--cluster_name", "fame", "--cluster", f"nats://127.0.0.1:{cluster_port}"]
            if routes:
                argv += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in routes)]
        self.process: ManagedProcess = pool.spawn(name, argv, start=False)

    @property
    def url(self) -> str:
        """Its client URL."""
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, within: float = READY_TIMEOUT) -> NatsServer:
        """Start it and wait until it accepts clients."""
        self.process.start()
        await self.process.wait_for_line(NATS_READY, stream="stderr", within=within, what="ready")
        return self


async def nats_cluster(pool: ProcessPool, binary: str, size: int = 3) -> list[NatsServer]:
    """Start ``size`` NATS servers routed to each other on loopback ports."""
    cluster_ports = [free_port() for _ in range(size)]
    servers = [
        NatsServer(
            pool,
            binary,
            name=f"nats-{i}",
            cluster_port=port,
            routes=[p for p in cluster_ports if p != port],
        )
        for i, port in enumerate(cluster_ports)
    ]
    await asyncio.gather(*(server.start() for server in servers))
    return servers


class ClusterSentinel(OurSentinel):
    """``fame sentinel`` in a cluster: ``FAME_CLUSTER_URL`` and friends from ``cluster_env``."""

    def __init__(
        self, *, node_id: str, name: str, log_dir: Path, cluster_env: Mapping[str, str]
    ) -> None:
        self.cluster_env = dict(cluster_env)
        super().__init__(node_id=node_id, name=name, log_dir=log_dir)

    def _env(self) -> dict[str, str]:
        return {"FAME_CLUSTER_PEER_TIMEOUT": str(PEER_TIMEOUT), **self.cluster_env}

    async def wait_peers(self, *peers: str, within: float = READY_TIMEOUT) -> dict[str, Any]:
        """Wait until the health endpoint lists exactly ``peers`` as the other members."""
        wanted = sorted(peers)

        def holds(body: dict[str, Any]) -> bool:
            listed = body.get("cluster", {}).get("peers", [])
            return sorted(p["systemId"] for p in listed) == wanted

        return await self.wait_health(holds, what=f"its peers are {wanted}", within=within)

    async def wait_peer_addresses(
        self, peer: str, count: int, *, within: float = READY_TIMEOUT
    ) -> dict[str, Any]:
        """Wait until the health endpoint shows ``count`` addresses held by ``peer``."""

        def holds(body: dict[str, Any]) -> bool:
            for listed in body.get("cluster", {}).get("peers", []):
                if listed["systemId"] == peer:
                    return bool(listed["addresses"] == count)
            return False

        return await self.wait_health(holds, what=f"{peer} holds {count} addresses", within=within)


async def cluster_sentinel(
    pool: ProcessPool, node_id: str, servers: Sequence[NatsServer], **env: str
) -> ClusterSentinel:
    """Start a sentinel joined to the NATS ``servers``; wait until it takes attaches."""
    cluster_env = {"FAME_CLUSTER_URL": ",".join(s.url for s in servers), **env}
    sentinel = ClusterSentinel(
        node_id=node_id,
        name=pool._unique(f"sentinel-{node_id}"),
        log_dir=pool.log_dir,
        cluster_env=cluster_env,
    )
    pool.processes.append(sentinel.process)
    await sentinel.start()
    return sentinel
