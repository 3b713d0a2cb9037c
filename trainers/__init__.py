"""lamo-sweep trainers: everything one LaMo/DT trial needs, runnable without Ray or MLflow (see trainers.train)."""
