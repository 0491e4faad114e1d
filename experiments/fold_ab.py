"""The folding Dense layer (``nets.folding_dot_general``) against the plain ``lax.dot_general``, through the
runtime's ``run``, in one process: both chunks are compiled here (the plain one with
``nets.folding_dot_general`` swapped for the plain dot while it is traced) and called in turn
(``bench.ab``), so the machine's drift falls on both. Prints, per stage and seed count, both speeds, the
median over the call pairs of the folding program's speed over the plain one's, and the largest
difference between their states after the warm-up chunk.

Only layers with an input of rank > 2 (a batch of states x sampled actions) differ, and only in a
program lowered for the CPU; for every other stage the two programs are the same.

    python experiments/fold_ab.py --config=cql,bracplus,arq --seeds=1,4 --chunk=20 --min_time=10

docs/performance.md (ninth session) has the table.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from absl import app  # noqa: E402

import bench  # noqa: E402  (its flags: --config, --seeds, --stages, --chunk, --min_time)
from offrl import nets  # noqa: E402

FOLDING = nets.folding_dot_general


def plain_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type)


def main(_):
    data = bench.synthetic(bench.FLAGS.size)
    for name in bench.config_names(bench.FLAGS.config):
        for n in bench.seed_counts():
            chunks = {}
            for dot in (plain_dot_general, FOLDING):
                nets.folding_dot_general = dot  # nets.Dense looks it up when a network is traced
                try:
                    _, _, _, init, run, stages = bench.config_stages(name, data)
                    for st, prepare in stages:
                        carry = init(bench.seed_keys(0, n))
                        chunks.setdefault(st.name, []).append(
                            bench.Chunked(run, carry._replace(state=prepare(carry.state)), data, st.name, bench.FLAGS.chunk))
                finally:
                    nets.folding_dot_general = FOLDING
            for stage, pair in chunks.items():
                plain, folded, ratio, pairs, diff = bench.ab(pair, bench.FLAGS.min_time, n)
                print(f"{name} {stage} {n} seed(s): plain dot {plain:.1f}, folding {folded:.1f} seed-updates/s; "
                      f"ratio {ratio:.3f} (median of {pairs} call pairs); states differ by at most {diff:.1e}", flush=True)


if __name__ == "__main__":
    app.run(bench.one_line_errors(main))
