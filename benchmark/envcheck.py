"""Check an installed environment against its profile: ``python -m benchmark.envcheck --profile cpu``.

The cpu profile must contain no ``nvidia-*`` distribution (those come only with CUDA
builds of torch, gigabytes each) and torch must be the pinned CPU build.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys


def nvidia_packages() -> list[str]:
    names = {(d.metadata["Name"] or "").lower() for d in md.distributions()}
    return sorted(n for n in names if n.startswith("nvidia-") or n.startswith("nvidia_"))


def check(profile: str) -> list[str]:
    problems = []
    if profile == "cpu":
        bad = nvidia_packages()
        if bad:
            problems.append(f"cpu profile has CUDA packages installed: {', '.join(bad)}")
        import torch

        if torch.version.cuda is not None:
            problems.append(f"cpu profile has a CUDA build of torch ({torch.__version__})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["cpu", "cuda"], required=True)
    args = parser.parse_args(argv)
    problems = check(args.profile)
    for p in problems:
        print(f"envcheck: {p}", file=sys.stderr)
    if not problems:
        print(f"envcheck: {args.profile} environment ok")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
