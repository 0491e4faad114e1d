"""TD3BC++ / BEAR++ hyperparameters per task and contaminated setting (paper Appendix C.2).

Settings (Appendix A; short names as in the paper's tables):

  expert         E      the expert dataset
  expert-medium  EM     D4RL's medium-expert (offrl: ``medium-expert``)
  expert-random  ER1/3/5/7 = expert-random-10/30/50/70 (final X% of expert replaced by random)
  expert-cloned  EC1/3/5/7 = expert-cloned-10/30/50/70 (Adroit: cloned instead of random)

``preset(env, setting)`` -> dict(alpha=..., gp_weight=...):

- ``source="table7"`` (default): Table 7, the values behind the paper's Tables 1 and 2. They depend
  on the environment only: alpha 2.5 and lambda_GP 1 for Gym locomotion; alpha door 0.5,
  hammer 0.2, pen 0.5, relocate 0.02 with lambda_GP 1 (relocate 0.1). BEAR++ shares the lambda_GP
  row (it has no alpha; its MMD threshold stays 0.05).
- ``source="fig11"``: the hyperparameter study's recommendation (Figure 11, alpha fixed at 2.5):
  a small lambda_GP for expert-medium (0.01-0.05; 0.02 here) and a medium one for ER3/5/7 (1, 2, 5;
  1 here, Table 7's value). Other settings keep Table 7.

``apply_words(config, arg, has_alpha)`` parses ``--config=configs/{td3bcpp,bearpp,bear}.py:<words>``
(comma-separated):

  <task>    e.g. hopper-expert-random-30, walker2d-ER3, hopper-EM, offrl/hopper/expert-v0: sets
            config.dataset and the Table 7 hyperparameters
  fig11     use Figure 11's recommended lambda_GP for the task's setting instead of Table 7's
  gp, nogp  switch the gradient penalty on / off   (Figure 8 ablation)
  cr, nocr  switch the critic-weighted constraint on / off
  cpu       a budget for a shared CPU: 100k updates, evaluation every 10k, 5 episodes, 3 seeds

A task also sets, where the reference does:
- walker2d-medium-expert (EM): ``agent.cr.percentile_clip = (5, 95)``, the TD3BC++ reference's clamp
  of the CR critic values to their batch 5th-95th percentiles for that task (glorgao/TD3BCpp,
  TD3_BC.py: "we add a clamp for Walker2d-Medium-Expert task as we find there exists a long-tail
  Q-value distribution"); every other task keeps (0, 100), no clamp;
- BEAR / BEAR++ (configs/bear.py, bearpp.py): the MMD kernel and sigma of ``offrl.algos.bear.MMD_PRESETS``
  (Gaussian kernel, sigma 20 for Adroit; Laplacian sigma 10 for Hopper / HalfCheetah, ...).
"""
from __future__ import annotations

import re

TABLE7_ALPHA = dict(walker2d=2.5, hopper=2.5, halfcheetah=2.5, door=0.5, hammer=0.2, pen=0.5, relocate=0.02)
TABLE7_GP = dict(walker2d=1.0, hopper=1.0, halfcheetah=1.0, door=1.0, hammer=1.0, pen=1.0, relocate=0.1)
FIG11_GP = {"expert-medium": 0.02, "expert-random-30": 1.0, "expert-random-50": 1.0, "expert-random-70": 1.0}

SHORT = {"E": "expert", "EM": "expert-medium", "ME": "expert-medium", "medium-expert": "expert-medium"}
for _x in (1, 3, 5, 7):
    SHORT[f"ER{_x}"] = f"expert-random-{10 * _x}"
    SHORT[f"EC{_x}"] = f"expert-cloned-{10 * _x}"
SETTINGS = ("expert", "expert-medium") + tuple(f"expert-{k}-{x}" for k in ("random", "cloned") for x in (10, 30, 50, 70))


def canonical_setting(setting: str) -> str:
    s = SHORT.get(setting, SHORT.get(setting.upper(), setting))
    if s not in SETTINGS and not re.fullmatch(r"expert-(random|cloned)-\d{1,2}", s):
        raise ValueError(f"unknown setting '{setting}': choose one of {', '.join(SETTINGS)} or E, EM, ER1/3/5/7, EC1/3/5/7")
    return s


def dataset_id(env: str, setting: str) -> str:
    """The offrl suite id of a setting: expert-medium is the suite's ``medium-expert``."""
    s = canonical_setting(setting)
    return f"offrl/{env}/{'medium-expert' if s == 'expert-medium' else s}-v0"


def split_task(task: str) -> tuple[str, str]:
    """'hopper-expert-random-30', 'hopper-ER3' or 'offrl/hopper/expert-random-30-v0' -> (env, setting)."""
    if "/" in task:
        parts = task.split("/")
        env, level = parts[-2], re.sub(r"-v\d+$", "", parts[-1])
    else:
        env, _, level = task.partition("-")
    if env not in TABLE7_ALPHA:
        raise ValueError(f"no TD3BC++ preset for environment '{env}': Table 7 covers {', '.join(TABLE7_ALPHA)}")
    return env, canonical_setting(level)


def preset(env: str, setting: str = "expert", source: str = "table7") -> dict:
    setting = canonical_setting(setting)
    if env not in TABLE7_ALPHA:
        raise ValueError(f"no TD3BC++ preset for environment '{env}': Table 7 covers {', '.join(TABLE7_ALPHA)}")
    out = dict(alpha=TABLE7_ALPHA[env], gp_weight=TABLE7_GP[env])
    if source == "fig11":
        out["alpha"] = 2.5 if env in ("walker2d", "hopper", "halfcheetah") else out["alpha"]
        out["gp_weight"] = FIG11_GP.get(setting, out["gp_weight"])
    elif source != "table7":
        raise ValueError(f"unknown preset source '{source}': choose table7 or fig11")
    return out


PRESETS = {(e, s): preset(e, s) for e in TABLE7_ALPHA for s in SETTINGS}

# CR critic values clamped to these batch percentiles before the min-max normalisation (reference: EM walker2d only).
CR_PERCENTILE_CLIP = {("walker2d", "expert-medium"): (5.0, 95.0)}


def cr_percentile_clip(env: str, setting: str) -> tuple:
    return CR_PERCENTILE_CLIP.get((env, canonical_setting(setting)), (0.0, 100.0))


def apply_words(c, arg: str, has_alpha: bool):
    """Apply ``--config=...:<words>`` to config ``c`` (see the module docstring)."""
    words = [w.strip() for w in (arg or "").split(",") if w.strip()]
    source = "fig11" if "fig11" in words else "table7"
    for w in words:
        if w in ("gp", "nogp"):
            c.agent.gp.enabled = w == "gp"
        elif w in ("cr", "nocr"):
            c.agent.cr.enabled = w == "cr"
        elif w == "cpu":
            c.num_steps, c.eval_interval, c.eval_episodes, c.num_seeds = 100_000, 10_000, 5, 3
            c.checkpoint_interval = 50_000
        elif w == "fig11":
            continue
        else:
            env, setting = split_task(w)
            c.dataset = w if "/" in w else dataset_id(env, setting)
            p = preset(env, setting, source)
            if has_alpha:
                c.agent.alpha = p["alpha"]
            c.agent.gp.weight = p["gp_weight"]
            c.agent.cr.percentile_clip = cr_percentile_clip(env, setting)
            if c.algo == "bear":
                from offrl.algos.bear import MMD_PRESETS

                c.agent.kernel, c.agent.mmd_sigma = MMD_PRESETS[env]
    return c
