"""offrl's launcher: train an algorithm on a dataset, vmapped over seeds (see offrl/launch.py).

    python -m offrl --config=td3bc --config.num_seeds=5 --workdir=runs/td3bc
    python -m offrl --config=td3bc --print_config      # every key, its default, what it means

--config: a bare name (td3bc, iql, bppo, ...) or a config file path, some with words after ':'
(bppo:cpu, arq:cpu, bracplus:cpu, td3bcpp:cpu: budgets for a 2-core CPU; --print_config lists a config's words);
--config.<key>=<value> overrides.
"""
from offrl.launch import run

if __name__ == "__main__":
    run()
