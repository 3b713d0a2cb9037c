"""Analysis for lamo-sweep: the paper's tables and figures, regenerated from the MLflow store only.

Pipeline (``docs/analysis.md``):

* ``runs.load_trial_runs`` — a sweep's trial runs → tidy frame (one row per run × evaluation step ×
  RTG target) with the grid axes, data provenance (``dataset``, ``data_source``) and ablation axes,
  read through the tracking contract ``trainers.contract`` (standard library only: no torch or Ray);
* ``select.select_scores`` — one score per trial by an explicit, recorded ``select.SelectionRule``
  (RTG target × checkpoint);
* ``tables`` — the paper's sparse / dense / Atari / ablation tables (Markdown, LaTeX, CSV);
* ``figures`` — score vs ratio, Figure-1 domain bars, learning curves, rliable plots (PNG + PDF);
* ``stats`` — rliable IQM / mean / optimality gap and probability of improvement with seeded
  stratified-bootstrap CIs (one default, ``stats.DEFAULT_BOOTSTRAP``);
* ``paper`` — the paper's known numbers (``paper_numbers.yaml``, with provenance) beside ours;
* ``claims`` — each of the paper's claims (``claims.CLAIMS``) against the runs: probability of
  improvement with its CI, runs per side and a verdict;
* ``report.write_report`` / ``lamo-analysis`` — all of it into one output directory.
"""
