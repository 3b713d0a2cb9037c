"""Wiki-RL's k-means alignment loss (Reid et al. 2022, "Can Wikipedia Help Offline Reinforcement
Learning?", arXiv 2201.12122, §3.2; code: github.com/machelreid/can-wikipedia-help-offline-rl, the main
recipe of ``code/run.sh``: ``--gpt_kmeans 1000 --gpt_kmeans_const 0.1``).

What the official code computes (``code/decision_transformer/models/decision_transformer.py`` and
``code/decision_transformer/training/seq_trainer.py``):

* **centres**: k-means with cosine distance (the ``kmeans_pytorch`` package, ``distance="cosine"``) of the
  pre-trained LM's input token embeddings ``wte`` ``(V, H)`` into ``k`` = 1,000 centres, computed once
  before training (cached in ``kmeans_cache/``) and never trained.
* **tokens**: the stacked (R, s, a) input embeddings after ``embed_ln`` and before the timestep embedding
  is added, ``(B, 3K, H)``, padding positions included.
* **loss**: both unit-normalised, then ``-(einsum("iaj,bj->iabj", tokens, centres).max(2).mean())``. The
  einsum keeps the hidden index ``j``: nothing is summed, so it is **not** the cosine similarity the
  paper writes (``-sum_i max_j cos(I_i, E_j)``) but, per hidden dimension, the largest product of the
  token's and a centre's component, averaged over tokens and dimensions (:func:`alignment_loss` with
  ``form="code"``, computed in closed form: ``max_b t_j c_bj = t_j max_b c_bj`` when ``t_j >= 0`` else
  ``t_j min_b c_bj``, which never builds the ``(B, 3K, k, H)`` tensor). ``form="paper"`` is the paper's
  cosine form (mean over tokens of the best centre's cosine similarity, negated).
* **weight**: ``0.1 * anneal(step)`` with ``anneal(x) = 1 / (1 + exp(-((5000 - x) / 500 - 5)))``, the
  step counted from 1: 0.993 at the start, 0.5 at step 2,500, 0.0067 at step 5,000, about 0 after
  (:func:`anneal`).

The centres are computed here with a seeded cosine k-means of our own (:func:`cosine_kmeans`), the
algorithm of ``kmeans_pytorch``: random distinct rows as initial centres, assignment to the most
cosine-similar centre, each centre the mean of its members, until the centres move less than ``tol``.
``kmeans_pytorch`` draws its initial rows from NumPy's unseeded global RNG, so its centres differ from run
to run; ours depend on the trial seed only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cosine_kmeans(x: torch.Tensor, k: int, seed: int, max_iters: int = 100, tol: float = 1e-4,
                  chunk_rows: int = 8192) -> tuple[torch.Tensor, int]:
    """k-means with cosine distance (``kmeans_pytorch``'s algorithm, module docstring).

    Args:
        x: ``(N, H)`` points (the LM's token embeddings), any float dtype; computed in float32 on its device.
        k: number of centres, ``1 <= k <= N``.
        seed: seeds the initial choice of ``k`` distinct rows (a private ``torch.Generator`` on the CPU:
            the global RNG is not touched).
        max_iters: at most this many assignment / update rounds.
        tol: stop when the summed Euclidean movement of the centres is below it (``kmeans_pytorch``: 1e-4).
        chunk_rows: rows of ``x`` per similarity block (memory: ``chunk_rows x k`` floats).

    Returns:
        ``(centres (k, H) float32 on x's device, iterations run)``. A centre left without members is
        re-drawn from a random row (as ``kmeans_pytorch``).

    Raises:
        ValueError: ``k`` outside ``[1, N]``.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"alignment.clusters = {k}, but the LM has {n} token embeddings; set "
                         f"alignment.clusters between 1 and {n}")
    x = x.detach().float()
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(n, generator=g)[:k].to(x.device)].clone()
    xn = F.normalize(x, dim=-1)
    it = 0
    for it in range(1, max_iters + 1):
        cn = F.normalize(centres, dim=-1)
        assign = torch.cat([(xn[i:i + chunk_rows] @ cn.T).argmax(1) for i in range(0, n, chunk_rows)])
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        new = sums / counts.clamp(min=1)[:, None]
        empty = counts == 0
        if empty.any():
            new[empty] = x[torch.randint(n, (int(empty.sum()),), generator=g).to(x.device)]
        shift = float((new - centres).norm(dim=1).sum())
        centres = new
        if shift < tol:
            break
    return centres, it


def alignment_loss(tokens: torch.Tensor, centres: torch.Tensor, form: str = "code") -> torch.Tensor:
    """Wiki-RL's alignment loss (module docstring), a scalar to minimise.

    Args:
        tokens: ``(B, T, H)`` input token embeddings (after ``embed_ln``, before the timestep embedding).
        centres: ``(k, H)`` k-means centres (constants: no gradient flows into them).
        form: ``code`` (the official code's per-dimension max) or ``paper`` (cosine similarity with the
            most similar centre, the paper's formula).

    Returns:
        ``-mean`` over tokens (and, for ``code``, hidden dimensions) of the best match; in ``[-1, 1]``.
    """
    t = F.normalize(tokens, dim=-1)
    c = F.normalize(centres.detach().to(t.dtype), dim=-1)
    if form == "code":
        best = torch.where(t >= 0, t * c.max(0).values, t * c.min(0).values)  # = max_b t_j c_bj
        return -best.mean()
    if form == "paper":
        return -(t @ c.T).max(-1).values.mean()
    raise ValueError(f"alignment.form must be 'code' or 'paper', got {form!r}")


def anneal(step: int, steps: int = 5000) -> float:
    """Wiki-RL's weight schedule ``1 / (1 + exp(-((steps - step) / (steps / 10) - 5)))`` (``seq_trainer.py``
    ``kmeans_anneal``, ``steps`` = 5,000); ``step`` counts from 1 (the first update). Dimensionless, in (0, 1)."""
    z = (steps - step) / (steps / 10) - 5
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def extend_positions(wpe: torch.Tensor, rows: int) -> torch.Tensor:
    """Wiki-RL's ``--extend_positions`` table (``decision_transformer.py``): the pre-trained position table
    ``wpe`` ``(P, H)`` used as the timestep embedding; when ``rows > P`` it is extended by keeping rows 0-1
    and repeating rows ``2..P-1`` until ``rows`` rows are filled. Returns a new ``(max(rows, P), H)`` tensor
    (the official code keeps all ``P`` rows when ``rows <= P``; its loop stops at ``rows - 1`` and would
    leave the last row uninitialised when ``rows - 3`` is a multiple of ``P - 2``: here every row is filled)."""
    p = wpe.shape[0]
    if rows <= p:
        return wpe.detach().clone()
    out = wpe.new_empty(rows, wpe.shape[1])
    out[:2] = wpe[:2]
    k, step = 2, p - 2
    while k < rows:
        n = min(step, rows - k)
        out[k:k + n] = wpe[2:2 + n]
        k += step
    return out.detach()
