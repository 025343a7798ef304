"""Joining a Ray cluster with a bounded wait: Ray's own clients retry an unreachable address for minutes (the GCS
client) or forever (Ray Client), so the address is probed with a plain TCP connection first and an unreachable one
ends the command with one line."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RewardlabError
from ..extras import require

__all__ = ["ClusterUnreachable", "connect", "parse_address", "probe"]

_CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")
"""Where a local ``ray start --head`` records its GCS address (what ``address='auto'`` reads)."""


class ClusterUnreachable(RewardlabError):
    """No Ray cluster answers at the given address within the timeout."""


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a Ray address: ``ray://host[:port]`` (Ray Client, port 10001) or ``host[:port]`` (GCS, 6379).

    >>> parse_address("ray://head.example:10001"), parse_address("10.0.0.5"), parse_address("[::1]:6380")
    (('head.example', 10001), ('10.0.0.5', 6379), ('::1', 6380))
    >>> parse_address("ray://")
    Traceback (most recent call last):
    ...
    rewardlab.errors.ConfigError: Ray address 'ray://' has no host: give ray://HOST:10001, HOST:6379, auto or local
    """
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    host, port = rest, 10001 if client else 6379
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(address, tail[1:])
    elif rest.count(":") == 1:
        host, _, text = rest.partition(":")
        port = _port(address, text)
    if not host:
        raise ConfigError(f"Ray address '{address}' has no host: give ray://HOST:10001, HOST:6379, auto or local")
    return host, port


def _port(address: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"Ray address '{address}': port '{text}' is not a number in 1..65535")
    return int(text)


def probe(address: str, timeout: float) -> None:
    """Raise :class:`ClusterUnreachable` unless a TCP connection to ``address`` opens within ``timeout`` seconds."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as err:
        reason = "no answer" if isinstance(err, (socket.timeout, TimeoutError)) else (err.strerror or str(err))
        raise ClusterUnreachable(
            f"no Ray cluster at {address} ({host}:{port}: {reason} within {timeout:g} s); check the address and that "
            "the head node is up (ray start --head), or raise --ray-timeout") from None


def _auto_address() -> str | None:
    """The address ``auto`` means: RAY_ADDRESS, else the local head's record, else None (Ray says none runs)."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    if _CURRENT_CLUSTER.is_file():
        return _CURRENT_CLUSTER.read_text().strip() or None
    return None


def connect(address: str | None, timeout: float = 10.0, feature: str = "--ray") -> bool:
    """Start a local cluster (``address`` None) or join ``address`` after probing it; True when this call started Ray
    (the caller shuts it down). ``timeout`` bounds the probe (seconds, > 0)."""
    if timeout <= 0:
        raise ConfigError(f"option 'ray_timeout' must be > 0 seconds, got {timeout}")
    ray: Any = require("ray", "ray", feature)
    if ray.is_initialized():
        return False
    target = _auto_address() if address == "auto" else address
    if target is not None:
        probe(target, timeout)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return True
