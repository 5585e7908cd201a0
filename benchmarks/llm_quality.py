"""LLM split benchmark script: same as `collab llm quality` (see python/collab/llm/quality.py).

    python benchmarks/llm_quality.py [options]      # writes benchmarks/results/llm_quality.{json,png}
"""
import argparse
import sys

from collab.llm import quality


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="llm_quality.py", description=quality.__doc__.splitlines()[0])
    quality.add_arguments(p)
    return quality.run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
