"""drain3's side of the log template mining peer benchmark (benches/log_peer.rs).

Reads the file the Rust harness wrote (one `system<TAB>content` line per log line,
Loghub 2k in file order), mines each system with a fresh drain3 TemplateMiner and
prints `lines seconds` (the best of three passes, like the Rust side's best of
twenty) on stdout. drain3 gets masking for the variable kinds cara
masks (IPs, hex, numbers), as drain3's own examples configure it.
"""
import sys
import time

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig


def config():
    c = TemplateMinerConfig()
    c.profiling_enabled = False
    c.drain_sim_th = 0.4
    c.drain_depth = 4
    c.masking_instructions = [
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
    ]
    return c


def main(path, passes):
    by_system = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            system, _, content = line.rstrip("\n").partition("\t")
            by_system.setdefault(system, []).append(content)
    lines = sum(len(v) for v in by_system.values())
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        for system, contents in by_system.items():
            miner = TemplateMiner(config=config())
            for content in contents:
                miner.add_log_message(content)
        best = min(best, time.perf_counter() - started)
    print(lines, best)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
