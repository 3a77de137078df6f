"""The test harness itself: an exception in a worker thread fails its test instead of
vanishing (common.py: Worker, run_clients, threading.excepthook; hardening_common.py:
run_tests). No server needed.

Each case runs a tiny test script in a child process, whose exit status and output must
say it failed, and common.self_test_thread_errors() runs the same machinery in-process."""
import os
import subprocess
import sys

from common import check, finish, self_test_thread_errors

HERE = os.path.dirname(os.path.abspath(__file__))


def child(code):
    """Run `code` in a new python3 next to common.py: (exit status, stdout + stderr)."""
    run = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=HERE))
    return run.returncode, run.stdout + run.stderr


print("workers of run_clients (psycopg2 tests)")
for what, held in self_test_thread_errors():
    check(held, what)

status, out = child("""
from common import check, finish, run_clients
results = run_clients(4, lambda i: 1 // (i - 2))   # client 2 divides by zero
check(True, "after run_clients")
finish()
""")
check(status != 0 and "ZeroDivisionError" in out and "after run_clients" not in out,
      f"a test script whose run_clients worker raises fails (exit {status})")

status, out = child("""
import threading
from common import check, finish
t = threading.Thread(target=lambda: [][1])
t.start(); t.join()
check(True, "the main thread's own checks pass")
finish()
""")
check(status == 1 and "IndexError" in out and "check(s) failed" in out,
      f"a test script whose plain thread raises fails at finish() (exit {status})")

status, out = child("""
from common import check, finish, run_clients
check(run_clients(3, lambda i: i * 2) == [0, 2, 4], "results in order")
finish()
""")
check(status == 0 and "all checks passed" in out, f"workers that do not raise pass (exit {status})")

print("threads of a hardening test (psycopg 3 tests, run_tests)")
status, out = child("""
import threading
from hardening_common import Worker, check, finish, run_tests
def t1_worker_raises():
    w = Worker(target=lambda: {}["key"]); w.start(); w.join()
def t2_plain_thread_raises():
    t = threading.Thread(target=lambda: int("x")); t.start(); t.join()
    check(True, "t2's own checks pass")
def t3_fine():
    check(True, "t3 passes")
run_tests([t1_worker_raises, t2_plain_thread_raises, t3_fine])
finish()
""")
check(status == 1 and "2 test(s)" in out and "t1_worker_raises: t1_worker_raises raised WorkerError" in out
      and "t2_plain_thread_raises: a thread raised" in out and "t3_fine:" not in out.split("test(s):")[-1],
      f"run_tests fails exactly the two tests whose thread raised (exit {status})")
if status != 1:
    print(out)

finish()
