"""lamo-sweep orchestrator: sweep files -> Ray Tune trials -> MLflow parent/child runs (see orchestrator.sweep)."""
