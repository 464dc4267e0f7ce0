#!/usr/bin/env python3
"""Sends one request with every key, exactly once: the warm-up of the 429 path.

    spend_keys.py HOST PORT PATH KEYFILE [CONNECTIONS]

With a limit of one request per minute per key, the request this sends is
each key's one admitted request; every request in the next minute is a 429.
Requests are pipelined over a few keep-alive connections, so 100k keys take
a few seconds. Prints how many answers had each status.
"""

import asyncio
import re
import sys
from collections import Counter

BATCH = 500
STATUS = re.compile(rb"HTTP/1\.1 (\d{3})")


async def spend(host: str, port: int, path: str, keys: list[str], counts: Counter) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    start, fresh = 0, True
    while start < len(keys):
        batch = keys[start : start + BATCH]
        writer.write(
            b"".join(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Api-Key: {key}\r\n\r\n".encode()
                for key in batch
            )
        )
        await writer.drain()
        # Count status lines until the whole batch is answered. A status line
        # split between two reads is caught by keeping the last 11 bytes.
        seen, tail = 0, b""
        while seen < len(batch):
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            data = tail + chunk
            for status in STATUS.findall(data):
                counts[int(status)] += 1
                seen += 1
            tail = data[-11:]
        start += seen
        if seen < len(batch):
            # The server closed the connection (nginx does after
            # keepalive_requests): the rest of the batch goes on a new one.
            if seen == 0 and fresh:
                raise ConnectionError(f"{host}:{port} closes connections without answering")
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            fresh = True
        else:
            fresh = False
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    host, port, path, keyfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 8
    with open(keyfile, encoding="ascii") as f:
        keys = [line.strip() for line in f if line.strip()]
    counts: Counter = Counter()
    share = -(-len(keys) // connections)
    await asyncio.gather(
        *(spend(host, port, path, keys[i : i + share], counts) for i in range(0, len(keys), share))
    )
    print(" ".join(f"{status}={n}" for status, n in sorted(counts.items())))


if __name__ == "__main__":
    asyncio.run(main())
