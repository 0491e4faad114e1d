"""Run outputs: per-evaluation metrics (JSONL), wandb, the final score table and the learning curve."""
from __future__ import annotations

import json
import math
import os
import sys
import warnings
from typing import Optional

import numpy as np

from offrl.sweep import label


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def wandb_base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def wandb_has_credentials() -> bool:
    """Whether wandb will find an API key: WANDB_API_KEY, an identity token file, or a .netrc entry
    for the server (what ``wandb login`` writes)."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(urlparse(wandb_base_url()).hostname or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_wandb(config) -> None:
    """Before anything is written: ``wandb.mode=online`` without an API key is a one-line ValueError."""
    if config.wandb.mode == "online" and not wandb_has_credentials():
        raise ValueError(
            "config.wandb.mode='online' needs a wandb API key: run `wandb login` (or set WANDB_API_KEY), "
            "or log locally with --config.wandb.mode=offline and upload later with `wandb sync`"
        )


def wandb_reachable(timeout: float = 5.0) -> Optional[str]:
    """None when the wandb server answers (any HTTP status), else why it cannot be reached."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(wandb_base_url(), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except Exception as e:  # refused, DNS, timeout, TLS
        return f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    return None


class Logger:
    """Appends one JSON line per record to ``metrics.jsonl`` and mirrors scalars to wandb.

    ``member_names`` (one per run member, grid point-major) with ``config.wandb.per_member`` (the
    default): one wandb run per member, all in one group (``config.wandb.group``, else the workdir's
    name), each logging its own training metrics and returns, as CORL's per-seed runs; otherwise one
    run with the means. ``wandb.mode=online`` with a server that cannot be reached falls back to
    offline logging (one warning), so the run completes and ``wandb sync <workdir>/wandb/offline-run-*``
    uploads it later.
    """

    def __init__(self, workdir: str, config, resume: bool = False, warn=None, member_names=None):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.wandb = None  # the one run of the means (per_member off)
        self.runs = []  # one run per member (per_member on)
        if config.wandb.mode == "disabled":
            return
        import wandb

        warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
        name = config.wandb.name or os.path.basename(os.path.abspath(workdir))
        common = dict(project=config.wandb.project, entity=config.wandb.entity or None, config=config.to_dict(),
                      dir=workdir, resume="allow" if resume else None)
        mode, why = config.wandb.mode, None
        if mode == "online":
            why = wandb_reachable()
        per_member = bool(member_names) and config.wandb.get("per_member", True)
        if per_member:
            wanted = [dict(common, name=f"{name} {m}", id=f"{_wandb_id(workdir)}-{i}", group=config.wandb.group or name,
                           reinit="create_new") for i, m in enumerate(member_names)]
        else:
            wanted = [dict(common, name=name, id=_wandb_id(workdir), group=config.wandb.group or None)]
        runs = []
        if why is None:
            try:
                runs = [wandb.init(mode=mode, **kw) for kw in wanted]
            except Exception as e:  # a server that answers the probe but fails the run's start
                if mode != "online":
                    raise
                for r in runs:
                    r.finish()
                runs, why = [], f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if not runs:
            warn(
                f"warning: wandb server {wandb_base_url()} cannot be reached ({why}); logging offline into "
                f"{os.path.join(workdir, 'wandb')}: upload later with `wandb sync {os.path.join(workdir, 'wandb')}/offline-run-*`"
            )
            runs = [wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kw) for kw in wanted]
        if per_member:
            self.runs = runs
        else:
            self.wandb = runs[0]

    def truncate_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint so the file matches an uninterrupted run."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        with open(self.path, "w") as f:
            for r in rows:
                if r["global_step"] <= step:
                    f.write(json.dumps(r) + "\n")

    def log(self, record: dict) -> None:
        record = _jsonable(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            flat = {}
            for k, v in record.items():
                if isinstance(v, (int, float)) and v is not None:
                    flat[k] = v
                elif isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
                    flat[f"{k}_mean"] = float(np.mean(v))
            self.wandb.log(flat, step=record["global_step"])
        for i, run in enumerate(self.runs):  # each member's own values: its entry of every per-member list
            own = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not k.startswith("train/")}
            for k in ("raw", "normalized"):
                if isinstance(record.get(k), list) and record[k][i] is not None:
                    own[f"eval/{k}"] = record[k][i]
            own.update({k: v[i] for k, v in (record.get("members") or {}).items() if v[i] is not None})
            run.log(own, step=record["global_step"])

    def close(self, summary: Optional[dict] = None) -> None:
        if self.wandb is not None:
            if summary:
                self.wandb.summary.update(_jsonable(summary))
            self.wandb.finish()
        for run in self.runs:
            if summary:
                run.summary.update(_jsonable(summary))
            run.finish()


def _wandb_id(workdir: str) -> str:
    import hashlib

    return hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:16]


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def finite_mean(values) -> Optional[float]:
    """Mean over the finite entries (None when there are none): one diverged member does not
    turn a statistic of the others into nan."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _fmt(v) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.1f}"


def score_table(rows: list[dict]) -> str:
    """Markdown table: one row per (variant, dataset) with normalised mean ± std over seeds and per-seed values.
    Rows with diverged members count ``finite/all`` seeds; their statistics are over the finite ones."""
    lines = [
        "| algorithm | dataset | hyperparameters | seeds | normalised score | raw return | per-seed normalised |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_seed = ", ".join(_fmt(v) for v in r["per_seed_normalized"])
        n = len(r["per_seed_normalized"])
        finite = r.get("finite_seeds", n)
        seeds = str(n) if finite == n else f"{finite}/{n} finite"
        norm = "n/a" if r["normalized_mean"] is None else f"{r['normalized_mean']:.1f} ± {r['normalized_std']:.1f}"
        raw = "n/a" if r["raw_mean"] is None else f"{r['raw_mean']:.1f} ± {r['raw_std']:.1f}"
        lines.append(
            f"| {r.get('variant', r['algo'])} | {r['dataset']} | {label(r.get('hparams', {}))} | {seeds} | {norm} | "
            f"{raw} | {per_seed} |"
        )
    return "\n".join(lines)


def diverged_note(rows: list[dict]) -> str:
    """One line per diverged member (grid point, seed, first non-finite metric and evaluation); '' if none."""
    out = []
    for r in rows:
        for d in r.get("diverged", []):
            where = label(r.get("hparams", {}))
            m, e = d.get("first_nonfinite_metric"), d.get("first_nonfinite_eval")
            what = []
            if m:
                what.append(f"first non-finite training metric {m['metric']} at update {m['global_step']}")
            if e is not None:
                what.append(f"first non-finite evaluation at update {e}")
            out.append(f"- diverged: {where + ', ' if where != '-' else ''}seed {d['seed']}"
                       f"{': ' + '; '.join(what) if what else ': non-finite score'} (left out of the statistics)")
    return ("\n" + "\n".join(out) + "\n") if out else ""


def plot_curve(evals: list[dict], path: str, title: str, groups: Optional[list] = None) -> None:
    """Learning curve: every seed as a thin line and their mean in bold, one panel per group
    (``groups`` = [(label, member index or slice)], e.g. one per grid point; default: all members)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not evals:
        return
    use_norm = all(v is not None for e in evals for v in e["normalized"])
    key = "normalized" if use_norm else "raw"
    x = np.array([e["global_step"] for e in evals])
    y = np.array([[np.nan if v is None else v for v in e[key]] for e in evals], np.float64)  # (evals, members)
    y[~np.isfinite(y)] = np.nan  # diverged members drop out of the mean
    groups = groups or [("mean over seeds", slice(None))]
    cols = min(len(groups), 3)
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols + 1, 3.6 * rows + 0.6), squeeze=False, sharey=True)
    for ax, (name, idx) in zip(axes.flat, groups):
        seeds = y[:, idx].reshape(len(x), -1)
        for j in range(seeds.shape[1]):
            ax.plot(x, seeds[:, j], lw=0.8, alpha=0.45, color="C0", label="one seed" if j == 0 else None)
        with warnings.catch_warnings():  # all members of a group diverged: nothing to draw
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.plot(x, np.nanmean(seeds, 1), lw=2.2, color="C0", label=f"mean over {seeds.shape[1]} seeds")
        ax.set_xlabel("update")
        ax.set_ylabel("normalised score" if use_norm else "episode return")
        if len(groups) > 1:
            ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
