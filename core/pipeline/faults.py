"""Fault injection for the kill -9 tests: SAE_ATLAS_KILL_AT names a point of the build
('before:<stage>', 'after:<stage>', 'mid:capture', 'mid:stats', 'before:commit') where the
process SIGKILLs itself, as a crash or an out-of-memory kill would. Unset, it does nothing."""

from __future__ import annotations

import os
import signal

KILL_ENV = "SAE_ATLAS_KILL_AT"


def kill_point(point: str) -> None:
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
