"""The processes one fixture started, all stopped at its teardown.

:class:`ProcessPool` spawns processes (their logs go to the pool's
directory) and starts sentinels; :meth:`ProcessPool.stop_all` sends SIGTERM to
all at once and SIGKILL to those still alive 5 s later.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from support.procs import STOP_GRACE, ManagedProcess, base_env
from support.sentinels import NaylenceSentinel, OurSentinel


class ProcessPool:
    """The processes of one fixture.

    Args:
        log_dir: where every process's logs go (under pytest's tmp_path).
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []
        self._names: dict[str, int] = {}

    def _unique(self, name: str) -> str:
        count = self._names.get(name, 0) + 1
        self._names[name] = count
        return name if count == 1 else f"{name}-{count}"

    def spawn(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        stdin_pipe: bool = False,
        start: bool = True,
    ) -> ManagedProcess:
        """Create a process owned by the pool (and start it, by default, without waiting).

        Args:
            name: a label; made unique within the pool.
            argv: the command.
            env: variables added to :func:`~support.procs.base_env`.
            stdin_pipe: give the process a stdin pipe.
            start: start it now.
        """
        process = ManagedProcess(
            self._unique(name), argv, env=base_env(env), log_dir=self.log_dir, stdin_pipe=stdin_pipe
        )
        self.processes.append(process)
        if start:
            process.start()
        return process

    async def our_sentinel(
        self,
        *,
        node_id: str = "ourSentinel01",
        name: str = "our-sentinel",
        wait: bool = True,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        scheme: str = "ws",
    ) -> OurSentinel:
        """Start our sentinel (``fame sentinel --port 0``).

        Args:
            node_id: its system id.
            name: label for logs.
            wait: wait until it takes attaches (else await ``start()`` later).
            env: extra variables (e.g. ``FAME_AUTH_SECRET``).
            args: extra arguments (e.g. ``--tls-cert``).
            scheme: ``wss`` when it serves TLS (its attach URL then names ``localhost``).
        """
        sentinel = OurSentinel(
            node_id=node_id,
            name=self._unique(name),
            log_dir=self.log_dir,
            env=env,
            args=args,
            scheme=scheme,
        )
        self.processes.append(sentinel.process)
        if wait:
            await sentinel.start()
        else:
            sentinel.launch()
        return sentinel

    async def naylence_sentinel(
        self, *, node_id: str = "refSentinel01", name: str = "naylence-sentinel", wait: bool = True
    ) -> NaylenceSentinel:
        """Start the Naylence reference sentinel on a free port.

        Args:
            node_id: its system id.
            name: label for logs.
            wait: wait for its ready line (else await ``start()`` later).
        """
        sentinel = NaylenceSentinel(node_id=node_id, name=self._unique(name), log_dir=self.log_dir)
        self.processes.append(sentinel.process)
        if wait:
            await sentinel.start()
        else:
            sentinel.launch()
        return sentinel

    async def stop_all(self) -> None:
        """Stop every process: SIGTERM to all at once, SIGKILL to those alive 5 s later."""
        for process in reversed(self.processes):
            process.terminate()
        await asyncio.gather(*(process.stop(grace=STOP_GRACE) for process in self.processes))
