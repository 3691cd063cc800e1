"""Start-up time of the command line against the imports a command needs (issue 16).

``geosynth --help`` and ``--version`` import no command module (``geosynth.cli.main.COMMANDS``
loads each on first use); the goal is at most a third of ``python -c "import torch, diffusers"``.
Both are measured in this one run, as fresh processes, median of ``--repeat`` runs.

    python bench/startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def seconds(cmd: list[str], repeat: int) -> float:
    """Median wall time of ``cmd`` in fresh processes (after one warm-up for the file cache)."""
    subprocess.run(cmd, check=True, capture_output=True)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    exe = str(Path(sys.executable).with_name("geosynth"))
    rows = {
        "geosynth --help": seconds([exe, "--help"], args.repeat),
        "geosynth --version": seconds([exe, "--version"], args.repeat),
        "python -c 'import torch, diffusers'": seconds(
            [sys.executable, "-c", "import torch, diffusers"], args.repeat
        ),
    }
    base = rows["python -c 'import torch, diffusers'"]
    for name, s in rows.items():
        print(f"{name:40s} {s:6.2f} s  ({s / base:.2f} of torch + diffusers)")
    return 0 if rows["geosynth --help"] <= base / 3 else 1


if __name__ == "__main__":
    sys.exit(main())
