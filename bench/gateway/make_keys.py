#!/usr/bin/env python3
"""Bulk-inserts N API keys into a tollgate key database whose schema exists.

    make_keys.py DB KEYFILE N

Writes the secrets to KEYFILE (one a line, for wrk's keys.lua) and their
SHA-256 hashes into DB's `keys` table in one transaction, the way
`Keys::create_with_secret` stores them (hash, last five characters, no
increments), without reloading the gateway's snapshot once per key. The
database must have been created by tollgate first (its migrations applied):
run.sh starts `tollgate serve` once on it and stops it before calling this.
"""

import hashlib
import sqlite3
import sys
import time


def main() -> None:
    db, keyfile, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    secrets = [f"tg_bench_{i:08d}_{hashlib.sha256(str(i).encode()).hexdigest()[:12]}" for i in range(n)]
    now_ms = int(time.time() * 1000)
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "keys" not in tables or "_sqlx_migrations" not in tables:
        sys.exit(f"{db} has no tollgate schema: start `tollgate serve` on it once first")
    with conn:
        conn.execute("DELETE FROM tier_changes")
        conn.execute("DELETE FROM keys")
        conn.executemany(
            "INSERT INTO keys (name, secret_hash, last5, increments, created_at, created_by) "
            "VALUES (?, ?, ?, 0, ?, 'bench')",
            (
                (f"bench-{i}", hashlib.sha256(s.encode()).digest(), s[-5:], now_ms)
                for i, s in enumerate(secrets)
            ),
        )
    active = conn.execute("SELECT count(*) FROM keys WHERE revoked_at IS NULL").fetchone()[0]
    conn.close()
    with open(keyfile, "w", encoding="ascii") as out:
        out.write("\n".join(secrets) + "\n")
    print(f"{active} keys in {db}, secrets in {keyfile}")


if __name__ == "__main__":
    main()
