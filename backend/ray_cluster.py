"""Joining a Ray cluster from a studio process: a recaption's runner, an import by reference.

Why a module of its own: the studio never runs a scheduler of its own. A run with engine
``ray`` is an ordinary run whose runner process is a Ray *driver*: it joins the cluster named
by ``address`` (what ``ray start --head`` printed, e.g. ``10.0.0.1:6379``; ``auto`` finds a
cluster started on this machine; empty starts a private Ray instance for this run only, which
ends with it), hands the heavy work to Ray, and writes what comes back to the studio's database
itself — so workers need no database access and SQLite keeps working. When the driver dies
(``kill -9``, a cancel), Ray ends the actors and tasks it owned.

Ray is an optional dependency (``pip install 'recap-studio[ray]'``); the message says so.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

#: where Ray's token lives when a cluster uses token authentication (Ray >= 2.5x default)
TOKEN_HINT = (
    "the cluster uses token authentication: set RAY_AUTH_MODE=token in the studio's environment, with "
    "the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN (see `ray get-auth-token`)"
)


class RayUnavailable(RuntimeError):
    """Ray cannot be used as asked (not installed, cluster unreachable); the message says what to do."""


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "engine ray needs the ray package (ray[data]): pip install 'recap-studio[ray]'"
        ) from None
    return ray


#: how long the studio waits for a cluster's port to answer before saying it cannot be reached
PROBE_TIMEOUT_S = 10.0


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast when nothing listens at ``host:port``: ``ray.init`` would retry for minutes
    (a run stuck in start-up with no word), where a wrong address deserves one clear line.
    ``auto`` and ``ray://`` client addresses are left to Ray."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"ray_address {address!r} is not host:port (e.g. 10.0.0.1:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayUnavailable(
            f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc}; is `ray start --head` "
            "running there, and is the port open from this machine?"
        ) from None


@contextmanager
def ray_session(address: str = "", *, log_to_driver: bool = True) -> Iterator[ModuleType]:
    """Connect to the cluster at ``address`` (or start a private local instance when empty) for
    the duration of the block; yields the ``ray`` module."""
    ray = import_ray()
    address = address.strip()
    kwargs = {"log_to_driver": log_to_driver, "logging_level": logging.WARNING}
    if address:
        probe(address)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(include_dashboard=False, **kwargs)
    except Exception as exc:  # ConnectionError, AuthenticationError, a version mismatch...
        if ray.is_initialized():
            ray.shutdown()
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        chain = f"{type(exc).__name__} {exc} {type(exc.__cause__).__name__} {exc.__cause__}".lower()
        hint = f"; {TOKEN_HINT}" if "auth" in chain else ""
        if not hint and address:
            hint = (
                "; is `ray start --head` running there, with the same Ray and Python versions as the studio "
                f"(ray {ray.__version__})?"
            )
        raise RayUnavailable(f"cannot connect to {where}: {text}{hint}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_resources(ray: ModuleType) -> dict[str, float]:
    """CPUs and GPUs the cluster has now (what sizes the actor pool when the run does not)."""
    resources = ray.cluster_resources()
    return {"CPU": float(resources.get("CPU", 0.0)), "GPU": float(resources.get("GPU", 0.0))}
