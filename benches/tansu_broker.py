"""tansu (memory storage) on a local address, for the probes in benches/ that ask how
it behaves (tansu_group_takeover.py, tansu_fetch_inside_batch.py)."""
import contextlib
import os
import subprocess
import tempfile
import time


def binary(argv, position):
    """The tansu binary named at argv[position], else ~/.cargo/bin/tansu."""
    if len(argv) > position and argv[position]:
        return argv[position]
    return os.path.expanduser("~/.cargo/bin/tansu")


@contextlib.contextmanager
def running(tansu, brokers, settle_s):
    """tansu listening on `brokers` (host:port) for the `with` block, in a scratch
    directory; `settle_s` seconds are left for it to start listening."""
    url = f"tcp://{brokers}"
    with tempfile.TemporaryDirectory() as work:
        broker = subprocess.Popen(
            [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"], cwd=work,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(settle_s)
            yield
        finally:
            broker.kill()
            broker.wait()
