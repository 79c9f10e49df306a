"""`make test`: run the whole suite against PostgreSQL and a real Redis.

Uses TEST_DATABASE_URL / REDIS_URL, or the local defaults, starting local servers that are
installed but stopped. Where PostgreSQL is not installed at all the suite runs on SQLite and
says so loudly; Redis can always come from the embedded server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/test"
# Database 15, so a `make run` on the same Redis (database 0) never shares queues with tests.
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def main(argv: list[str]) -> int:
    from tvtrader.devservices import ensure_postgres, ensure_redis

    db_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    if db_url.startswith(("postgres", "postgresql")) and not ensure_postgres(db_url):
        if os.environ.get("CI") or os.environ.get("REQUIRE_POSTGRES"):
            print("PostgreSQL is not available and CI requires it.", file=sys.stderr)
            return 2
        banner = "!" * 78
        print(
            f"{banner}\n!! PostgreSQL is not installed here: running the suite on SQLite instead.\n"
            f"!! PostgreSQL is the production database; results on SQLite are not the whole story.\n{banner}",
            flush=True,
        )
        db_url = f"sqlite:///{BASE_DIR / 'var' / 'test' / 'test.sqlite3'}"
    ensure_redis(redis_url, BASE_DIR / "var" / "test-redis", daemonize=True)
    env = dict(os.environ)
    env["DATABASE_URL"] = db_url
    env["REDIS_URL"] = redis_url
    env.setdefault("TVTRADER_VAR_DIR", str(BASE_DIR / "var" / "test"))
    print(f"==> tests on {db_url.split('@')[-1]} with Redis {redis_url.split('@')[-1]}", flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "pytest", *argv], env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
