"""Run outputs: per-evaluation metrics (JSONL), wandb, the final score table and the learning curve."""
from __future__ import annotations

import json
import math
import os
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


class Logger:
    """Appends one JSON line per record to ``metrics.jsonl`` and mirrors scalars to wandb."""

    def __init__(self, workdir: str, config, resume: bool = False):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.wandb = None
        if config.wandb.mode != "disabled":
            import wandb

            self.wandb = wandb.init(
                mode=config.wandb.mode,
                project=config.wandb.project,
                entity=config.wandb.entity or None,
                group=config.wandb.group or None,
                name=config.wandb.name or os.path.basename(os.path.abspath(workdir)),
                config=config.to_dict(),
                dir=workdir,
                resume="allow" if resume else None,
                id=_wandb_id(workdir),
            )

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

    def close(self, summary: Optional[dict] = None) -> None:
        if self.wandb is not None:
            if summary:
                self.wandb.summary.update(_jsonable(summary))
            self.wandb.finish()


def _wandb_id(workdir: str) -> str:
    import hashlib

    return hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:16]


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def score_table(rows: list[dict]) -> str:
    """Markdown table: one row per (variant, dataset) with normalised mean ± std over seeds and per-seed values."""
    lines = [
        "| algorithm | dataset | hyperparameters | seeds | normalised score | raw return | per-seed normalised |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_seed = ", ".join("nan" if v is None else f"{v:.1f}" for v in r["per_seed_normalized"])
        norm = "n/a" if r["normalized_mean"] is None else f"{r['normalized_mean']:.1f} ± {r['normalized_std']:.1f}"
        lines.append(
            f"| {r.get('variant', r['algo'])} | {r['dataset']} | {label(r.get('hparams', {}))} | {len(r['per_seed_normalized'])} | {norm} | "
            f"{r['raw_mean']:.1f} ± {r['raw_std']:.1f} | {per_seed} |"
        )
    return "\n".join(lines)


def plot_curve(evals: list[dict], path: str, title: str, groups: Optional[list] = None) -> None:
    """Learning curve: mean normalised (or raw) score over seeds with a ±1 std band, one line per group
    (``groups`` = [(label, member index or slice)], default: all members together)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not evals:
        return
    use_norm = all(v is not None and math.isfinite(v) for e in evals for v in e["normalized"])
    key = "normalized" if use_norm else "raw"
    x = np.array([e["global_step"] for e in evals])
    y = np.array([e[key] for e in evals], np.float64)  # (evals, members)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, idx in groups or [("mean over seeds", slice(None))]:
        mean, std = y[:, idx].mean(1), y[:, idx].std(1)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("update step")
    ax.set_ylabel("normalised score" if use_norm else "return")
    ax.set_title(title + " (band: ± 1 std over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
