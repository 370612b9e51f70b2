"""Joining or starting the Ray cluster, once, for the build and for the explain stage."""

from __future__ import annotations


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to `address` ('auto', host:port) or start a local cluster (of `num_cpus` CPUs);
    True when this call started it, so the caller also shuts it down."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(
        address=address,
        num_cpus=num_cpus if address is None else None,
        include_dashboard=False,
        log_to_driver=False,
    )
    return True
