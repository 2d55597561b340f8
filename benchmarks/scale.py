"""HowTo100M at full size, measured by simulation: every measurement of issue 17 in one go.

  1. scale_prepare.py: a synthetic HowTo100M (HowTo100M_v1.csv, caption.json) at 1, 3 and
     10% of its 1.22M videos, and `prepare` on each: time and peak memory, fitted lines.
  2. scale_plan.py: `snakemake -n` of pre-training at 200 to 10,000 shards per modality.
  3. scale_loader.py: the id index at up to 136M captions, a reader worker's start-up,
     the training split over the 1% and 3% manifests of step 1, and the training loader's
     clips per second from a store read from the disk (page cache evicted).

Each runs as its own process, one after the other (they measure time: never two at once),
under --work; the figures are in docs/benchmarks.md and the arithmetic built on them in
docs/scale.md. Needs about 15 GB of free disk.

    python benchmarks/scale.py [--work /tmp/scale]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *arguments: str) -> None:
    print(f"== {script} {' '.join(arguments)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *arguments], check=True, cwd=HERE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/scale"))
    work = parser.parse_args().work.resolve()
    run("scale_prepare.py", "--work", str(work))
    run("scale_plan.py", "--work", str(work / "plan"))
    manifests = [str(work / f"manifest_{fraction}") for fraction in ("0.01", "0.03")]
    run("scale_loader.py", "--work", str(work / "loader"), "--manifests", *manifests)


if __name__ == "__main__":
    main()
