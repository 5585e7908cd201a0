"""LLM split benchmarks: the same as `collab llm bench` / `collab llm quality`
(python/collab/llm/bench.py and quality.py).

    python benchmarks/llm_bench.py [options]          # modes x RTTs -> benchmarks/results/llm_bench.*
    python benchmarks/llm_bench.py quality [options]  # compression quality -> llm_quality.*
"""
import argparse
import sys

from collab.llm import bench, quality


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mod = quality if argv[:1] == ["quality"] else bench
    if mod is quality:
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="llm_bench.py", description=mod.__doc__.splitlines()[0])
    mod.add_arguments(p)
    return mod.run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
