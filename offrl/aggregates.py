"""Aggregates over a table's cells: interquartile mean and mean over tasks x seeds with stratified-bootstrap
95% confidence intervals (rliable, Agarwal et al. 2021), and a performance-profile plot."""
import os


def aggregate_lines(results: dict, tasks, columns, plot_path: str, reps: int = 2000, seed: int = 0) -> list:
    """Markdown lines with, per column, the interquartile mean and the mean of the normalised scores over
    tasks x seeds with stratified-bootstrap 95% confidence intervals (rliable, Agarwal et al. 2021), and a
    performance-profile plot (fraction of runs scoring above tau, with bootstrap bands) saved at ``plot_path``.

    ``results``: {(task, column): a cell's results.json dict}. A column's score matrix is
    (seeds, tasks) of ``per_seed_normalized``; tasks of a column with no normalised score for every
    seed are left out of it (listed). Deterministic for a given ``seed``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from rliable import library as rly
    from rliable import metrics, plot_utils

    scores, left_out = {}, {}
    for col in columns:
        cols, miss = [], []
        for task in tasks:
            r = results.get((task, col))
            per_seed = np.asarray([np.nan if v is None else v for v in (r or {}).get("per_seed_normalized", [])], float)
            ok = r is not None and per_seed.size and np.isfinite(per_seed).all()
            if ok and cols and per_seed.size != cols[0].size:
                ok = False
            (cols.append(per_seed) if ok else miss.append(task))
        if cols:
            scores[col] = np.stack(cols, axis=1)  # (seeds, tasks)
        if miss:
            left_out[col] = miss
    lines = ["", "### Aggregates over tasks x seeds (rliable: IQM and mean, stratified-bootstrap 95% CIs)", ""]
    if not scores:
        return lines + ["no column has normalised scores for every seed of any task", ""]

    def iqm_and_mean(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    np.random.seed(seed)  # rliable/arch also draw from NumPy's global generator
    point, ci = rly.get_interval_estimates(scores, iqm_and_mean, reps=reps,
                                           random_state=np.random.RandomState(seed))
    lines += ["| column | IQM [95% CI] | mean [95% CI] | tasks x seeds |", "|---|---|---|---|"]
    for col, m in scores.items():
        (iqm, mean), lo, hi = point[col], ci[col][0], ci[col][1]
        lines.append(f"| {col} | {iqm:.1f} [{lo[0]:.1f}, {hi[0]:.1f}] | {mean:.1f} [{lo[1]:.1f}, {hi[1]:.1f}] | "
                     f"{m.shape[1]} x {m.shape[0]} |")
    for col, miss in left_out.items():
        lines.append(f"\n{col}: left out (no normalised score for every seed): {', '.join(miss)}")
    hi_score = max(100.0, max(float(m.max()) for m in scores.values()))
    taus = np.linspace(min(0.0, min(float(m.min()) for m in scores.values())), hi_score, 101)
    np.random.seed(seed)  # create_performance_profile's bootstrap draws from NumPy's global generator
    profiles, profile_cis = rly.create_performance_profile(scores, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=profile_cis, ax=ax,
                                         xlabel="normalised score (tau)", ylabel="fraction of runs with score > tau")
    ax.legend(ax.get_lines()[: len(scores)], list(scores), loc="upper right")  # the curves, not the bands
    fig.tight_layout()
    fig.savefig(plot_path, dpi=120)
    plt.close(fig)
    lines += ["", f"performance profile: {os.path.basename(plot_path)}", ""]
    return lines
