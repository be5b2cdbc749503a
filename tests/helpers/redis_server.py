"""The loopback redis-server of tests/servers/redis.sh, for the shared-limiter and Celery tests.

Started on demand; without redis-server the tests skip, except under CI=true, where that is a
failure (CI must not go green by skipping).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PORT = int(os.environ.get("RAWSMTP_REDIS_PORT", "6390"))
SCRIPT = Path(__file__).parents[1] / "servers" / "redis.sh"


def redis_url(db: int = 0) -> str:
    """The test server's URL for database ``db``, starting the server if it is not running."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(port=PORT, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True)
        if started.returncode:
            reason = f"could not start redis-server: {started.stderr.strip()}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
    finally:
        client.close()
    return f"redis://127.0.0.1:{PORT}/{db}"
