"""``bench.commit_cpu``'s accounting: CPU read from /proc for real processes, summed per role and per op, and a
process that exits while it is measured failing the run instead of dropping its CPU from the total."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.commit_cpu import measure, ms_per_op_by_role
from bench.mqtt_latency import cpu_seconds
from bench.restart_latency import BenchError

# prints once it has burnt its CPU, then waits: it must not exit (and turn zombie) before it is read again
BURN = (
    "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"
    "print('done', flush=True)\nsys.stdin.read()\n"
)
SLEEP = "import sys\nsys.stdin.read()\n"


def test_the_cpu_a_process_burns_is_read_from_proc_and_a_reaped_one_is_gone() -> None:
    burner = subprocess.Popen(
        [sys.executable, "-c", BURN.format(s=0.3)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        before = cpu_seconds(burner.pid)
        assert burner.stdout is not None and burner.stdout.readline() == "done\n"
        after = cpu_seconds(burner.pid)
        assert before is not None and after is not None and after - before >= 0.25, (before, after)
    finally:
        assert burner.stdin is not None
        burner.stdin.close()
        burner.wait(timeout=30)
    assert cpu_seconds(burner.pid) is None


def test_a_process_that_turned_zombie_during_the_run_fails_the_measurement() -> None:
    child = subprocess.Popen([sys.executable, "-c", SLEEP], stdin=subprocess.PIPE)

    def let_it_exit_unreaped() -> None:
        assert child.stdin is not None
        child.stdin.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # exited, not reaped: the kernel keeps its /proc entry as Z
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
            time.sleep(0.01)
        pytest.fail("the child never became a zombie")

    try:
        with pytest.raises(BenchError, match=rf"process {child.pid} \(replica\) exited"):
            measure({child.pid: "replica"}, 1, let_it_exit_unreaped)
    finally:
        child.wait(timeout=5)


def test_cpu_is_summed_per_role_and_divided_by_the_ops() -> None:
    roles = {1: "follower replica", 2: "follower replica", 3: "leader replica"}
    before = {1: 1.0, 2: 5.0, 3: 0.0}
    after = {1: 1.5, 2: 5.25, 3: 2.0}
    assert ms_per_op_by_role(roles, before, after, ops=250) == {
        "follower replica": 3.0,  # (0.5 + 0.25) s / 250
        "leader replica": 8.0,
        "total": 11.0,
    }


def test_measure_counts_this_process_as_the_client_and_fails_when_a_process_exits_mid_run() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEP], stdin=subprocess.PIPE)
    try:
        figures, ran = measure({sleeper.pid: "replica"}, 1, lambda: sum(i * i for i in range(2_000_000)))
        assert ran > 0 and figures["client"] > 0 and set(figures) == {"replica", "client", "total"}

        def stop_the_replica() -> None:
            assert sleeper.stdin is not None
            sleeper.stdin.close()
            sleeper.wait(timeout=30)

        with pytest.raises(BenchError, match=rf"process {sleeper.pid} \(replica\) exited"):
            measure({sleeper.pid: "replica"}, 1, stop_the_replica)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
