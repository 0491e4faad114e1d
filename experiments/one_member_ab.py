"""One seed, two programs, one process: the runtime's ``run`` (``Train.vmapped``: one member runs without
the member axis, ``nets.vmap_members``) against the same ``run`` under ``jax.vmap`` over a member axis of
size 1 (what the runtime compiled before session 18). Both chunks are compiled here and called in turn
(``bench.time_calls``), so the machine's drift falls on both; the figure is the median over the call
pairs of the speed ratio. Also prints the largest difference between the two states after the warm-up
chunk (float rounding, which Adam can amplify on tiny gradients).

    python experiments/one_member_ab.py --config=td3bc,iql,cql --stages=train --min_time=10

docs/performance.md (eighth session) has the table.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from absl import app  # noqa: E402

import bench  # noqa: E402  (its flags: --config, --stages, --chunk, --min_time)


def main(_):
    data = bench.synthetic(1_000_000)
    for name in bench.config_names(bench.FLAGS.config):
        _, _, tr, init, run, stages = bench.config_stages(name, data)
        vmapped = jax.jit(jax.vmap(tr.run, in_axes=(0, None, None, None, None)), static_argnums=(2, 4),
                          donate_argnums=(0,))
        for st, prepare in stages:
            chunks = []
            for fn in (vmapped, run):
                carry = init(bench.seed_keys(0, 1))
                chunks.append(bench.Chunked(fn, carry._replace(state=prepare(carry.state)), data, st.name,
                                            bench.FLAGS.chunk))
            slow, fast, ratio, pairs, diff = bench.ab(chunks, bench.FLAGS.min_time)
            print(f"{name} {st.name}: vmapped over one member {slow:.1f}, without the axis {fast:.1f} updates/s; "
                  f"ratio {ratio:.3f} (median of {pairs} call pairs); states differ by at most {diff:.1e}", flush=True)


if __name__ == "__main__":
    app.run(bench.one_line_errors(main))
