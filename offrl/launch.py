"""The one launcher: train any algorithm (registered, or your own file) on any dataset, vmapped over seeds.

    python -m offrl --config=td3bc --config.num_seeds=5 \
        --config.dataset=offrl/hopper/medium-v0 --workdir=runs/td3bc_hopper_medium
    python -m offrl --config=td3bc --print_config      # every key, its default, what it means

``--config`` takes a bare name (``td3bc``: the ``configs/td3bc.py`` shipped with offrl, found
from any directory) or a path to a config file (``configs/td3bc.py``, ``my_config.py:arg``).
``experiments/launch.py`` is this same launcher. Writes config.json, metrics.jsonl,
results.md/json, curve.png and a checkpoint into --workdir; running the same command again
resumes from the checkpoint (or continues it, when only ``num_steps`` was raised); without
--workdir the run goes to ``runs/<algo>_<dataset>_<hash of the config>``, so that holds too.
Ctrl-C or SIGTERM stops at the next chunk boundary with a checkpoint: one line, exit status 130.

Bad input (a config file that does not exist, a misspelt key, a value of the wrong type or
range, an unknown algorithm or dataset) stops with one line saying what to do, exit status 2,
before anything is written.
"""
from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import sys

CONFIG_FLAG = "--config"
INTERRUPTED = 130  # exit status after SIGINT / SIGTERM (128 + SIGINT), as shells report Ctrl-C


def configs_dir() -> str:
    """The ``configs/`` directory shipped with offrl: beside the ``offrl`` package, in the
    repository and in an installed site-packages alike."""
    import offrl

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(offrl.__file__))), "configs")


def available_configs() -> list[str]:
    d = configs_dir()
    if not os.path.isdir(d):
        return []
    names = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".py") and not f.startswith("_"):
            with open(os.path.join(d, f)) as fh:
                if "def get_config" in fh.read():
                    names.append(f[:-3])
    return names


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit status 2."""


def resolve_config(value: str) -> str:
    """A ``--config`` value as a file path (``path`` or ``path:arg``): a bare name is the shipped config."""
    path, sep, arg = value.partition(":")
    if path and os.sep not in path and "/" not in path and not path.endswith(".py"):
        shipped = os.path.join(configs_dir(), path + ".py")
        if not os.path.exists(shipped):
            raise UsageError(
                f"no config named '{path}': choose one of {', '.join(available_configs())} or give a path to a config file"
            )
        path = shipped
    elif not os.path.isfile(path):
        raise UsageError(
            f"config file '{path}' does not exist: give a path to a config file or a bare name "
            f"({', '.join(available_configs())})"
        )
    parent = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(path)), "__init__.py")) and parent not in sys.path:
        sys.path.insert(0, parent)  # so that `from configs.td3bc import ...` inside a config file resolves
    return path + sep + arg


def load_config(value: str):
    """The ConfigDict a ``--config`` value names (without command-line overrides)."""
    import inspect

    path, _, arg = resolve_config(value).partition(":")
    spec = importlib.util.spec_from_file_location("_offrl_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if arg and not inspect.signature(module.get_config).parameters:
        raise UsageError(f"{value.partition(':')[0]} takes no words after ':' (got '{arg}'): its get_config() has no "
                         f"argument; drop ':{arg}' and set keys with --config.<key>=<value>")
    return module.get_config(arg) if arg else module.get_config()


def config_keys(config, prefix: str = "") -> list[str]:
    """Every dotted key of a ConfigDict, nested dicts included (``agent``, ``agent.alpha``, ...)."""
    keys = []
    for k, v in config.items():
        keys.append(prefix + k)
        if hasattr(v, "items"):
            keys += config_keys(v, prefix + k + ".")
    return keys


def _split_config_arg(argv: list[str]) -> tuple[list[str], str | None]:
    """argv with its ``--config`` value resolved to a file, and that value."""
    out, value, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == CONFIG_FLAG and i + 1 < len(argv):
            value = argv[i + 1]
            out += [CONFIG_FLAG, resolve_config(value)]
            i += 2
            continue
        if a.startswith(CONFIG_FLAG + "="):
            value = a.split("=", 1)[1]
            out.append(f"{CONFIG_FLAG}={resolve_config(value)}")
        else:
            out.append(a)
        i += 1
    return out, value


def check_overrides(argv: list[str], config) -> None:
    """UsageError naming a ``--config.<key>`` that the config does not have, with the closest valid keys."""
    keys = config_keys(config)
    leaves = [k for k in keys if not hasattr(config[k], "items")]
    for a in argv:
        if not a.startswith(CONFIG_FLAG + "."):
            continue
        key = a[len(CONFIG_FLAG) + 1:].split("=", 1)[0]
        if key.startswith("no") and key[2:] in keys:  # --config.nofoo: absl's boolean negation
            continue
        if key not in keys:
            close = difflib.get_close_matches(key, leaves, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UsageError(f"unknown config key '{key}': {hint}(list every key with --print_config)")


# What a run-level key means when no comment beside its default in offrl/config.py says it.
BASE_MEANINGS = {
    "algo": "the algorithm (a module of offrl/algos)",
    "batch_size": "transitions per update (of a single-stage algorithm)",
    "discount": "discount factor gamma",
    "eval_overlap": "auto | on | off: evaluate a copy of the policies on the host CPU while the accelerator trains the next chunk",
    "obs_norm_eps": "added to the observation std before dividing",
    "reward_bias": "added after reward_scale",
    "seed": "first seed; members use seed, seed+1, ...",
    "wandb.mode": "disabled | offline | online (unreachable online falls back to offline)",
    "wandb.project": "wandb project",
    "wandb.entity": "wandb entity (team or user; empty: your default)",
    "wandb.group": "wandb group (empty: none)",
    "wandb.name": "wandb run name (empty: the workdir's name)",
    "wandb.per_member": "one wandb run per member (seed x grid point) in one group, as CORL's per-seed runs; False: one run of the means",
}

# What a key means when no comment beside its default says it: by name, then by suffix.
MEANINGS = {
    "tau": "Polyak rate of the target networks",
    "alpha": "weight of the algorithm's behaviour-regularisation term (see its docstring)",
    "temperature": "inverse temperature of the advantage weights",
    "expectile": "expectile of the value regression",
    "policy_noise": "std of the target-policy smoothing noise",
    "noise_clip": "clip of the target-policy smoothing noise",
    "policy_freq": "critic updates per actor (and target) update",
    "log_std_min": "lower clip of the policy's log-std",
    "log_std_max": "upper clip of the policy's log-std",
    "num_critics": "critics in the ensemble",
    "lr": "Adam learning rate",
    "gp.weight": "lambda_GP: weight of the TD3BC++ gradient penalty",
    "gp.k": "gradient-norm threshold of the penalty",
    "gp.every": "penalise every N critic steps",
    "gp.repeats": "action samples per state for the penalty",
    "gp.actions": "where the penalty's actions are drawn (see offrl/plugins.py)",
    "cr.critic": "which critic value weights the constraint (see offrl/plugins.py)",
    "cr.normalize": "min-max normalise the constraint weight",
    "cr.weights_from": "before | after: the critic of the constraint weight is the one before this step's critic update or after it",
    "cr.percentile_clip": "(lo, hi): clamp the critic values to their batch lo-th and hi-th percentiles before normalising",
    "sampler_steps": "steps of the diffusion sampler per candidate (not updates: num_steps leaves it alone)",
    "cosine_actor_lr": "switch: the actor's learning rate follows a cosine decay over num_steps",
}
# What an algorithm's key means where its file has no comment beside the default (or only a provenance
# note); each read from the algorithm's docstring and code.
ALGO_MEANINGS = {
    "arq": {
        "fourier_scale": "scale of the score network's Gaussian Fourier features of the diffusion time",
        "ema": "EMA rate of the score network's weights; the EMA weights sample candidates and score likelihoods",
        "beta_min": "VP-SDE noise schedule: beta(t) at t = 0",
        "beta_max": "VP-SDE noise schedule: beta(t) at t = 1",
        "dsm_t_min": "smallest diffusion time drawn by the denoising score-matching loss (t ~ U(dsm_t_min, 1))",
        "std_floor": "state / action stds in (0, std_floor) become std_floor when standardising",
        "num_candidates": "candidate actions the PC sampler draws per state (the support Q-learning maximises over)",
        "snr": "signal-to-noise ratio of the PC sampler's Langevin corrector step",
        "sampler_t_end": "diffusion time the PC sampler stops at (it starts at 1)",
        "num_probes": "Rademacher probes of Hutchinson's trace estimate in the ODE log-likelihood",
        "ode_t0": "diffusion time the probability-flow ODE of the log-likelihood starts from",
        "ode_rtol": "relative tolerance of the log-likelihood ODE solver (Dopri5)",
        "ode_atol": "absolute tolerance of the log-likelihood ODE solver (Dopri5)",
        "ode_step_limit": "most steps of the log-likelihood ODE solver; a row that needs more gets a nan likelihood",
        "cache_dir": "where pre-generated candidates and likelihoods are cached (chunk by chunk, so a killed run resumes)",
        "threshold": "log-likelihood at or below which a candidate is out of support (excluded from the max)",
        "weight_clip": "upper clip of the AWR policy weight exp(alpha A)",
    },
    "bracplus": {
        "act_mode": "q_select (the reference: act_samples clipped samples, the one with the highest Q) or mean (tanh of the mean)",
        "act_samples": "samples per state that q_select picks from when acting",
        "alpha_init": "initial value of the KL multiplier alpha(s)",
        "entropy_reg": "switch: the entropy multiplier beta and its max-entropy constraint H(pi) <= H_0",
        "epoch_length": "updates per epoch: eps_KL and H_0 are estimated over the last epoch_length updates of "
                        "their stage, eps_GP is re-estimated every epoch_length updates",
        "gp_weight_learned": "switch: the gradient penalty's weight is a learned multiplier floored at gp_weight "
                             "(the reference) instead of gp_weight fixed (the paper)",
        "max_ood_grad_norm": "the learned gradient-penalty weight rises while the batch-mean penalty exceeds this",
        "num_ensembles": "members of the CVAE behaviour ensemble",
        "std_scale": "H_0 = behaviour's negative ELBO - |A| log(std_scale) (unless target_entropy is given)",
        "train_behavior_in_main": "switch: keep training the behaviour ensemble during the main stage (the reference)",
        "use_gp": "switch: the gated gradient penalty on the critics",
    },
    "itrpo": {
        "alpha_entropy": "entropy weight of the policy loss and target (trained when train_alpha_entropy)",
        "train_alpha_entropy": "switch: learn the entropy weight SAC-style to target entropy -|A|",
        "behavior_clip_eps": "dataset actions are clipped to +-(1 - eps) for pi_b's log-likelihood",
        "divergence": "kl | mmd: the divergence D(s) between pi and pi_b",
        "kl_factor": "tau (the reference code) | alpha (the paper's Eq. 5): what weights the KL in the target and policy loss",
        "log_std_mode": "clip (rlkit: clamp to [log_std_min, log_std_max]) | tanh (BRAC's smooth squash)",
        "mmd_kernel": "laplacian | gaussian: the MMD's kernel (divergence=mmd)",
        "mmd_sigma": "width of the MMD kernel (divergence=mmd)",
        "mmd_squared": "switch: the squared MMD (BRAC) instead of its square root (BEAR) (divergence=mmd)",
        "num_target_samples": "policy samples per state averaged in the target and policy loss",
        "pi_k": "current (the code: the newest policy, no gradient) | lagged (a copy refreshed every pi_k_interval updates)",
        "pi_k_interval": "updates between refreshes of pi_k when pi_k=lagged",
        "shaping": "switch: the log-ratio reward shaping (False: BRAC-vp's update with the same settings)",
        "shared_target_samples": "switch: the target's policy samples are also those of the divergence estimate",
    },
    "bppo": {
        "clip_eps": "PPO clip ratio of the improvement loss (decayed by clip_decay)",
        "omega": "asymmetric advantage weight: A x omega where A > 0, x (1 - omega) elsewhere",
        "entropy_weight": "weight of the policy-entropy bonus in the improvement loss",
        "grad_clip": "global gradient-norm clip of the policy's Adam",
        "lr_decay_every": "the policy learning rate is multiplied by lr_decay every this many improvement steps",
        "q_target_every": "Q-stage optimiser steps between Polyak updates of the target Q",
        "dataset_settings": "what config.dataset implied (set by configs/bppo_presets.py; read only)",
    },
    "bc": {
        "loss": "mse (deterministic tanh policy, squared error) | nll (tanh-Gaussian, maximum likelihood)",
        "top_fraction": "%BC: keep only the best trajectories by return, this fraction (1: plain BC)",
        "top_by": "timesteps | episodes: whether top_fraction counts timesteps or episodes",
    },
    "cql": {
        "min_q_weight": "weight of the conservative (CQL(H)) term in the critic loss",
        "num_actions": "sampled actions per state in the CQL(H) log-sum-exp",
    },
    "iql": {"weight_clip": "upper clip of the advantage weight exp(temperature x A)"},
    "bear": {
        "kernel": "laplacian | gaussian: the MMD's kernel",
        "mmd_sigma": "width of the MMD kernel",
        "log_alpha_init": "initial log of the Lagrange multiplier of the MMD constraint",
        "log_alpha_min": "lower clip of the multiplier's log",
        "log_alpha_max": "upper clip of the multiplier's log",
        "actor_log_std_max": "upper clip of the policy's log-std (inf: none)",
    },
}
ALGO_MEANINGS["brac"] = dict(
    {k: ALGO_MEANINGS["itrpo"][k] for k in ("divergence", "log_std_mode", "mmd_kernel", "mmd_sigma", "mmd_squared",
                                            "alpha_entropy", "train_alpha_entropy", "behavior_clip_eps",
                                            "num_target_samples", "shared_target_samples")},
    warm_start="the first warm_start updates train the policy on the divergence only (0: Q from the first update)",
    reward_bonus="constant added to every reward in the target (iTRPO's; BRAC: 0)",
    grad_penalty="weight of a gradient penalty on the critics at policy actions (iTRPO's; BRAC: 0)",
)
ALGO_MEANINGS["itrpo"].update({k: ALGO_MEANINGS["brac"][k] for k in ("warm_start", "reward_bonus", "grad_penalty")})

SUFFIXES = (
    ("_lr", "Adam learning rate ({})"),
    ("_hidden_dims", "hidden layer sizes ({} network)"),
    ("hidden_dims", "hidden layer sizes"),
    ("_steps", "updates ({} stage)"),
    ("enabled", "switch: {} on or off"),
)


def _source_comments(path: str) -> dict:
    """{key: comment} from the trailing comments beside defaults in a source file
    (``c.dataset_size = 1_000_000  # transitions, ...``, ``alpha=2.5,  # ...``)."""
    import re

    pattern = re.compile(r"^\s*(?:c\.)?(?:agent\.)?(\w+)\s*=[^#]*#\s*(.+?)\s*$")
    out: dict = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                m = pattern.match(line)
                if m and m.group(1) not in out:
                    out[m.group(1)] = m.group(2)
    return out


def describe(config, sweepable=None) -> str:
    """Every key of ``config`` (nested ones dotted) with its value and a one-line meaning;
    keys a ``config.grid`` may sweep in one vmapped program are marked."""
    import offrl

    here = os.path.dirname(os.path.abspath(offrl.__file__))
    source, shown = os.path.join(here, "algos", f"{config.algo}.py"), f"offrl/algos/{config.algo}.py"
    try:
        from offrl.algos import get_algorithm, is_outside

        record = get_algorithm(config.algo)
        if is_outside(config.algo):  # comments beside the defaults in the user's own file
            source = shown = sys.modules[record.init.__module__].__file__
        if sweepable is None:
            sweepable = record.sweepable
    except Exception:  # describing never fails on an algorithm that cannot be loaded
        sweepable = sweepable or ()
    base = _source_comments(os.path.join(here, "config.py"))
    agent = _source_comments(source)
    rows = []
    for key in config_keys(config):
        value = config[key]
        if hasattr(value, "items"):
            continue
        last = key.split(".")[-1]
        if key.startswith("agent."):
            meaning = (MEANINGS.get(".".join(key.split(".")[-2:])) or ALGO_MEANINGS.get(config.algo, {}).get(last)
                       or agent.get(last) or MEANINGS.get(last))
        else:
            meaning = base.get(last) or BASE_MEANINGS.get(key)
        if meaning is None and isinstance(value, bool):
            meaning = f"switch: {last.replace('_', ' ')} on or off"
        if meaning is None:
            for suffix, text in SUFFIXES:
                if last.endswith(suffix):
                    meaning = text.format(last[: -len(suffix)].strip("_") or key.split(".")[-2])
                    break
        if meaning is None:
            meaning = f"see {shown}" if key.startswith("agent.") else ""
        if key.startswith("agent.") and key[len("agent."):] in sweepable:
            meaning += " [grid-sweepable]"
        rows.append((key, repr(value), meaning))
    w1 = max(len(r[0]) for r in rows)
    w2 = min(max(len(r[1]) for r in rows), 24)
    head = f"config '{config.algo}' ({len(rows)} keys; override any with --config.<key>=<value>)"
    return "\n".join([head] + [f"  {k:<{w1}}  {v:<{w2}}  {m}".rstrip() for k, v, m in rows])


def default_workdir(config) -> str:
    """``runs/<algo>_<dataset>_<8 hex digits of the config>``: the same command (the same config, whatever its
    execution-only keys) finds the same directory again, so rerunning it resumes instead of starting anew."""
    import hashlib
    import json

    from offrl.config import EXECUTION_ONLY

    def flat(d, prefix=""):
        for k, v in d.items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(prefix + k, v)]

    keys = {k: v for k, v in flat(json.loads(config.to_json())) if k not in EXECUTION_ONLY}
    digest = hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join("runs", f"{config.algo}_{config.dataset.strip('/').replace('/', '_')}_{digest}")


def config_doc(value: str) -> list[str]:
    """[the config file, its docstring's lines]: what a config is and the words it takes after ':'
    (``bppo:cpu``, ...), for --print_config; [] when it has no docstring."""
    import ast

    path = resolve_config(value).partition(":")[0]
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    return [os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path] + doc.splitlines() if doc else []


def configs_with_words() -> list[str]:
    """The shipped configs whose ``get_config`` takes words after ':' (``bppo:cpu``, ``arq:cpu,implicit``)."""
    out = []
    for name in available_configs():
        with open(os.path.join(configs_dir(), name + ".py")) as f:
            if "def get_config(arg" in f.read():
                out.append(name)
    return out


def quiet_startup() -> None:
    """Keep a command's console to its progress and results: absl's INFO lines (JAX's backend probes,
    rliable's 'Calculating estimates for ...'), JAX's INFO logging, and the random_state FutureWarning
    that the ``arch`` package raises inside rliable's bootstrap. The launcher calls it (unless
    --verbosity is given); so can any other entry point (experiments/reproduce.py)."""
    import warnings

    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("jax").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*random_state.*deprecated", category=FutureWarning, module=r"arch\.")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    if "workdir" in flags.FLAGS:
        return
    config_flags.DEFINE_config_file(
        "config", resolve_config("default"),  # (also puts the shipped configs/ on the import path)
        "a config name (td3bc, iql, ...: the configs/ shipped with offrl) or a config file path; "
        f"{', '.join(configs_with_words())} take words after ':' (e.g. bppo:cpu, a budget for a 2-core CPU); "
        "--print_config shows a config's words",
    )
    flags.DEFINE_string("workdir", None, "Run directory (default: runs/<algo>_<dataset>_<hash of the config>, so the same command resumes it).")
    flags.DEFINE_integer("stop_after", None, "Stop (with a checkpoint) after this many updates.", lower_bound=1)
    flags.DEFINE_bool("print_config", False, "Print every config key with its value and meaning, then exit.")


NUM_STEPS_FLAG = CONFIG_FLAG + ".num_steps"
_chosen: dict = {}  # set by parse_flags: the config to run (when it is not absl's) and the num_steps scaling


def _take(argv: list[str], prefix: str) -> tuple[list[str], list[tuple[str, str]]]:
    """argv without its ``prefix...=value`` / ``prefix... value`` arguments, and those as [(key, value)]."""
    out, taken, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith(prefix):
            key, eq, val = a.partition("=")
            if not eq and i + 1 < len(argv):
                val, i = argv[i + 1], i + 1
            taken.append((key[len(CONFIG_FLAG) + 1:], val))
        else:
            out.append(a)
        i += 1
    return out, taken


def _without_num_steps(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--config.num_steps``, and whether it was there."""
    rest, taken = _take(argv, NUM_STEPS_FLAG)
    return rest, any(k == "num_steps" for k, _ in taken)


def _parse_config(argv: list[str]):
    """The config of ``argv``'s ``--config`` and ``--config.*`` overrides, parsed apart from absl's global flags."""
    from absl import flags
    from ml_collections import config_flags

    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", resolve_config("default"), flag_values=fv)
    fv(argv, known_only=True)
    return fv.config


def outside_agent(record, overrides: list[tuple[str, str]]):
    """``record.default_config()`` with ``--config.agent.<key>=<value>`` overrides, each value read as
    its default's type (an algorithm outside offrl brings its own agent keys)."""
    import ast

    agent = record.default_config()
    for key, text in overrides:
        key = key[len("agent."):]
        default = agent[key]
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1")
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                value = type(default)(ast.literal_eval(text))
            elif isinstance(default, str):
                value = text
            else:
                value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UsageError(f"--config.agent.{key}={text}: not a value of the type of its default {default!r}") from None
        agent[key] = value
    return agent


def _outside_algo(argv: list[str]):
    """(record, argv without its --config.agent.* arguments, those arguments) when ``--config.algo`` names an
    algorithm outside offrl (``path/to/my_algo.py``, ``module:NAME``); else None."""
    algo = [v for k, v in _take(argv, CONFIG_FLAG + ".algo")[1] if k == "algo"]
    from offrl.algos import get_algorithm, is_outside

    if not algo or not is_outside(algo[-1]):
        return None
    try:
        record = get_algorithm(algo[-1])
    except ValueError as e:
        raise UsageError(str(e)) from None
    rest, agent_args = _take(argv, CONFIG_FLAG + ".agent.")
    return record, rest, agent_args


def _flag_hint(message: str, argv: list[str]) -> str:
    """' (did you mean --config.num_seeds?)' when an unknown flag is a config key."""
    import re

    m = re.search(r"Unknown command line flag '([\w.]+)'", message)
    if not m:
        return ""
    try:
        value = _split_config_arg(list(argv))[1]
        keys = config_keys(load_config(value or "default"))
    except Exception:  # the hint is a courtesy: a config that cannot be read gets none
        return ""
    name = m.group(1)
    for key in (name, f"agent.{name}"):
        if key in keys:
            return f" (did you mean --config.{key}?)"
    return ""


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with every input error turned into one line (exit status 2).

    Two things absl's config flag cannot do happen here: ``--config.algo`` naming an algorithm outside
    offrl starts ``config.agent`` from that algorithm's defaults, and ``--config.num_steps`` scales a
    multi-stage algorithm's update counts (:func:`offrl.config.scale_num_steps`)."""
    from absl import flags

    from offrl.config import scale_num_steps

    try:
        argv, value = _split_config_arg(list(argv))
        _chosen["source"] = value or "default"
        base = load_config(value or "default")
        outside = _outside_algo(argv)
        if outside:
            record, argv, agent_args = outside
            base.agent = outside_agent(record, [])
            check_overrides([f"--config.{k}={v}" for k, v in agent_args], base)
        check_overrides(argv[1:], base)
        own_argv, budget = _without_num_steps(argv)
        saved, sys.argv = sys.argv, list(argv)  # ml_collections' config flag reads its overrides from sys.argv
        try:
            rest = flags.FLAGS(argv)
            config = _parse_config(own_argv) if budget else flags.FLAGS.config
        finally:
            sys.argv = saved
        if outside:
            config.agent = outside_agent(record, agent_args)
        if outside or budget:
            _chosen["config"] = config
        if budget:  # one meaning of num_steps everywhere
            explicit = {k[len("agent."):] for k, _ in _take(own_argv, CONFIG_FLAG + ".agent.")[1]}
            explicit |= {k[len("agent."):] for k, _ in (agent_args if outside else [])}
            _chosen["scaled"] = scale_num_steps(config, flags.FLAGS.config.num_steps, keep=explicit)
        return rest
    except UsageError as e:
        fail(str(e))
    except flags.Error as e:
        fail(f"{e}".splitlines()[0] + _flag_hint(str(e), argv))
    except Exception as e:  # a config file that raises when loaded, an override that cannot be applied
        fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (while reading the config)")


def main(argv):
    del argv
    from absl import flags

    FLAGS = flags.FLAGS
    if not FLAGS["verbosity"].present:  # keep the console to progress and results
        quiet_startup()
    config = _chosen.get("config", FLAGS.config)
    if _chosen.get("scaled"):
        print(f"num_steps={config.num_steps}: {config.algo}'s update counts scaled in proportion ("
              + ", ".join(f"agent.{k}={v}" for k, v in sorted(_chosen["scaled"].items())) + ")", flush=True)
    if FLAGS.print_config:
        print(describe(config))
        about = config_doc(_chosen.get("source", "default"))
        if about:
            print("\nabout this config (" + about[0] + "):\n" + "\n".join("  " + line for line in about[1:]).rstrip())
        return
    from offrl.runner import RunInterrupted, run_experiment

    workdir = FLAGS.workdir
    if workdir is None:
        workdir = default_workdir(config)
        print(f"workdir {workdir} (no --workdir given; the same command resumes it)", flush=True)
    try:
        run_experiment(config, workdir, stop_after=FLAGS.stop_after)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        fail(str(e))
    except RunInterrupted as e:  # SIGINT / SIGTERM: checkpointed at a chunk boundary
        print(str(e), file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:  # a second signal, or one before training started: no new checkpoint
        print(f"interrupted; rerun the same command to resume {workdir} from its last checkpoint, if any",
              file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED)


def run() -> None:
    """Entry point of ``python -m offrl`` and ``experiments/launch.py``."""
    from absl import app, flags

    _define_flags()
    for name in ("config", "workdir", "stop_after", "print_config"):  # shown by --help, not only --helpfull
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
    app.run(main, flags_parser=parse_flags)
