"""Append acknowledged batches forever: prints "ACK <last seq>" only after the durable commit returned."""

from __future__ import annotations

import sys

from actors.eventlog import EventLog


def payload(seq: int) -> dict[str, object]:
    return {"seq": seq, "body": f"reading-{seq}" * 8}


def main(path: str, batch: int) -> None:
    log = EventLog(path)
    seq = log.last_seq("readings")
    while True:
        with log.batch() as b:
            for i in range(1, batch + 1):
                b.append("readings", payload(seq + i))
            b.put_value("writer/offset", seq + batch)
        seq += batch
        sys.stdout.write(f"ACK {seq}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
