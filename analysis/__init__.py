"""Analysis for lamo-sweep: tables and figures regenerated from the MLflow store only.

``runs.load_trial_runs`` reads the trial runs of a sweep into a tidy frame (one row per run ×
evaluation step × RTG target), ``select.select_scores`` applies an explicit, recorded rule for
which RTG target and which checkpoint give a trial's score, and ``report`` turns the selected
scores into the paper-style mean ± std table and the score-vs-sample-ratio figure
(``lamo-analysis report``).
"""
