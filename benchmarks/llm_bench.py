"""LLM split benchmark script: same as `collab llm bench` (see python/collab/llm/bench.py).

    python benchmarks/llm_bench.py [options]      # writes benchmarks/results/llm_bench.{json,png}
"""
import argparse
import sys

from collab.llm import bench


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="llm_bench.py", description=bench.__doc__.splitlines()[0])
    bench.add_arguments(p)
    return bench.run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
