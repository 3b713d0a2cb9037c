"""Variant presets: the paper's recipes and its ablations, each as its differences from the trial
config's defaults.

The defaults of :class:`trainers.config.TrialConfig` *are* LaMo's recipe, so the ``lamo`` preset is
empty; every other preset lists only the fields it changes (a test checks that no preset restates a
default). A sweep variant may start from a preset (``variants: {dt: {preset: dt}}``). Layering, lowest
first: defaults <- preset <- the sweep's ``base`` <- the variant's own fields <- grid axes.

A field a preset sets is part of what the preset *means* (``dt`` means "no LM"): the sweep validation
refuses a ``base`` (or ``--set``) value that would silently replace it (:func:`overridden_by_base`), and
asks for it to be said in the variant instead.

Sources (docs/lamo_recipe.md, which cites the official code):

* ``lamo``: the defaults, ``experiment-d4rl/run_cotrain.sh`` (paper §4): pre-trained GPT-2, LoRA, MLP
  embeddings, language loss 0.1. ``model.lm`` is ``gpt2``; offline, set it to ``lamo-wiki-tiny``.
* ``dt``: the original Decision Transformer (Chen et al. 2021; kzl/decision-transformer
  ``gym/experiment.py`` defaults, which ``experiment-d4rl/experiment.py`` keeps when no script flag is
  given): random-init GPT-2 with 3 layers x 128, 1 head, inner 512, ReLU (the ``model.arch`` defaults),
  linear embeddings with a tanh action head, full training, no language loss, weight decay 1e-4,
  warm-up 10,000 steps, AdamW eps 1e-8 (plain AdamW, as the official code without a pre-trained LM).
  Which of these the paper's DT baseline used is not published; the DT defaults are the likeliest
  (docs/deviations.md).
* ablations (paper §5.5): ``lamo-linear`` (linear embeddings, tanh head), ``lamo-full`` (full
  fine-tuning), ``lamo-frozen`` (LM frozen, only embeddings and heads train), ``lamo-no-lm-loss``
  (lambda = 0), ``lamo-random-init`` (the LM's architecture with random weights). An ablation changes
  one thing, so ``lamo-random-init`` keeps every other LaMo setting, AdamW eps 1e-6 included, although
  the official code's path without a pre-trained LM would use eps 1e-8: the comparison then isolates
  pre-training.
* ``lamo-hopper``: the official Hopper recipe, ``experiment-d4rl/run_hopper.sh`` (srzer/LaMo-2023, added
  in the repository's last commit, 11 Apr 2024, after issue 1 reported Hopper 46 against the paper's
  74.1: https://github.com/srzer/LaMo-2023/issues/1). The script is ``run.sh`` without
  ``--mlp_embedding``: linear embeddings with the tanh action head and, like ``run.sh``, no
  ``--co_training`` (language loss off); everything else is LaMo's (pre-trained LM, LoRA, lr, wd,
  warm-up, eps). It equals ``lamo-linear`` + ``lamo-no-lm-loss``. The paper's appendix ("Network architecture for
  LaMo") makes Hopper the one task with linear embeddings, i.e. ``lamo-linear``; whether its Hopper runs
  used the language loss is not stated (docs/deviations.md, row 14).
* ``wiki-rl``: Reid et al. 2022, "Can Wikipedia Help Offline Reinforcement Learning?" (arXiv 2201.12122;
  github.com/machelreid/can-wikipedia-help-offline-rl, its main recipe: every command of ``code/run.sh``,
  with ``code/experiment.py``, ``code/utils.py`` and ``code/decision_transformer/models/decision_transformer.py``):
  the pre-trained LM fully fine-tuned (``model.finetune: full``), linear embeddings, the action head tied
  to the action embedding (``--share_input_output_proj``: ``tanh(h @ W_action)``, no bias,
  ``model.tied_action_head``), residual dropout 0.2 (``--dropout 0.2``), attention dropout 0.1 (set in
  ``decision_transformer.py``), embedding dropout 0.1 (the pre-trained GPT-2 config's, kept), AdamW
  lr 1e-4 with eps 1e-6 (``utils.py`` uses eps 1e-6 whenever a pre-trained LM is loaded), weight decay
  1e-4 and warm-up 10,000 steps (argument defaults; ``utils.py``'s separate LM group with weight decay 0
  selects modules whose type name contains "transformers", which its own GPT-2 copy's does not, so the
  group is empty and every weight decays, as one group here), gradient clip 0.25 (``seq_trainer.py``),
  no language loss (the co-training loss exists only in ``code/lm_cotraining/``, with weight 0.1
  hard-coded; ``run.sh`` runs the main code), the timestep embedding initialised from the pre-trained
  position table (``--extend_positions``, ``model.extend_positions``) and the k-means alignment loss
  (``--gpt_kmeans 1000 --gpt_kmeans_const 0.1``: 1,000 cosine k-means centres of the LM's token
  embeddings, weight 0.1 annealed to about 0 after 5,000 steps; ``alignment``, :mod:`trainers.alignment`,
  with the official code's per-dimension form). What differs is in docs/deviations.md row 26 (the
  ChibiT LM, the k-means initialisation). How LaMo configured Wiki-RL is not published.
* ``cql``, ``iql``, ``td3bc``, ``bc``: value-based and imitation baselines of the paper's tables (paper
  §5; which implementation LaMo ran is not published), trained with d3rlpy 2.8.0's algorithms
  (:mod:`trainers.baselines`) on the same data subset, state normalisation, evaluation and budget as
  LaMo/DT. Hyperparameters, all in :data:`BASELINE_RECIPES`:

  - ``cql``: d3rlpy's CQL reproduction (github.com/takuseno/d3rlpy ``reproductions/offline/cql.py``):
    actor lr 1e-4, critic lr 3e-4, temperature lr 1e-4, alpha lr 0 (fixed conservative weight), 3 x 256
    actor and critic MLPs, batch 256, 10 action samples, conservative weight 5.0 (the script's value for
    every dataset but ``*-medium-v0``; our tasks are the ``-v2`` generation). Rewards unscaled.
  - ``iql``: d3rlpy's IQL reproduction (``reproductions/offline/iql.py``) = IQL paper (Kostrikov et al.
    2021, arXiv 2110.06169, App. B) for locomotion: actor and critic lr 3e-4, batch 256, expectile 0.7,
    inverse temperature 3.0, max weight 100, actor lr cosine-annealed (over ``train.steps``; the script:
    over its 500k steps), rewards x 1000 / (max - min trajectory return).
  - ``td3bc``: d3rlpy's TD3+BC reproduction (``reproductions/offline/td3_plus_bc.py``) = TD3+BC paper
    (Fujimoto & Gu 2021, arXiv 2106.06860, §5): actor and critic lr 3e-4, batch 256, alpha 2.5, policy
    noise 0.2 clipped at 0.5, actor update every 2 steps, standardised states (ours, see below). Rewards
    unscaled.
  - ``bc``: d3rlpy has no BC reproduction script; CORL's BC (github.com/corl-team/CORL
    ``algorithms/offline/any_percent_bc.py`` with ``configs/offline/bc/*/medium_v2.yaml``, frac 1.0):
    deterministic tanh policy, 2 x 256 MLP, Adam lr 3e-4, batch 256, standardised states, MSE.

  On Kitchen tasks (:data:`DOMAIN_VARIANTS`) ``iql`` means ``iql-kitchen``, the IQL paper's Kitchen recipe
  (App. B; github.com/ikostrikov/implicit_q_learning ``configs/kitchen_config.py``): expectile 0.7,
  inverse temperature 0.5, dropout 0.1 on the policy MLP (d3rlpy's ``VectorEncoderFactory(dropout_rate)``
  as the actor encoder, ``baseline.actor_dropout``), lr 3e-4, cosine-annealed actor lr, raw rewards
  (``train_offline.py`` normalises only the locomotion tasks). The other baselines have no published
  Kitchen or Reacher2d recipe in d3rlpy's reproductions or CORL's configs (CORL configures locomotion,
  AntMaze, Maze2d and Adroit only), so they keep the recipes above there (docs/deviations.md).

  Every baseline standardises states with the training subset's mean and std (+1e-6), the rule LaMo and
  DT use, rather than d3rlpy's/CORL's eps 1e-3 (docs/deviations.md). The step budget is the sweep's
  ``train.steps`` (the published scripts run 500k-1M steps).

  On Atari tasks (:data:`DOMAIN_VARIANTS`) ``cql`` and ``bc`` mean ``cql-atari`` and ``bc-atari``: d3rlpy's
  discrete-action algorithms on the stacked 84x84 frames, d3rlpy's Nature-DQN ``PixelEncoderFactory``
  (its defaults: conv 32x8x8/4, 64x4x4/2, 64x3x3/1, 512 features, ReLU) and ``PixelObservationScaler``
  (frames / 255), evaluated like ``lamo-atari`` (every 200 steps, 5 episodes):

  - ``cql-atari``: d3rlpy's discrete CQL reproduction (github.com/takuseno/d3rlpy
    ``reproductions/offline/discrete_cql.py``, the 2.x script): ``DiscreteCQLConfig`` with lr 5e-5,
    Adam eps 1e-2 / 32, batch 32, alpha 4.0, quantile-regression Q-function with 200 quantiles, target
    network synchronised every 2,000 steps, rewards clipped to [-1, 1]; gamma 0.99 and one critic (the
    config's defaults).
  - ``bc-atari``: d3rlpy has no discrete BC reproduction script; ``DiscreteBCConfig``'s documented
    defaults (d3rlpy.readthedocs.io, "Behavior Cloning"; d3rlpy 2.8.0 ``algos/qlearning/bc.py``): lr 1e-3,
    batch 100, beta 0.5 (the logit-norm regulariser), Adam with torch's defaults.
* Atari (any preset runs on an Atari task: the task's domain supplies the pixel model,
  :mod:`trainers.domains.atari`; these two carry the official Atari hyperparameters, and on an Atari task
  ``lamo`` and ``dt`` mean them, :data:`DOMAIN_VARIANTS`):
  ``lamo-atari`` = srzer/LaMo-2023 ``experiment-atari/run.sh``: LoRA r = alpha = 32 (alpha is the default) with peft's defaults
  (dropout 0, bias frozen), lr 1e-3, weight decay 0.01, batch 128, gradient clip 1.0, AdamW eps 1e-8
  (``core.py`` builds ``torch.optim.AdamW`` without ``eps``: torch's default, not the D4RL code's 1e-6), no
  language loss (``co_training=0``), evaluation every 200 steps with 5 episodes per target
  (``cfgs/config.yaml``). ``dt-atari`` = ``dt`` with the ``cfgs/config.yaml`` optimiser (lr 3e-4,
  weight decay 0.1, batch 128, clip 1.0, AdamW eps 1e-8 = torch's default) and GELU blocks of GPT-2's
  defaults (``GPT2Config(n_layer=3, n_head=1, n_embed=128)``: intended width 128). ``dt-atari-official``
  reproduces the official typo ``n_embed`` (GPT-2's key is ``n_embd``), which leaves the width at 768
  with GPT-2's inner size 3072 (docs/deviations.md).
"""

from __future__ import annotations

import copy

from trainers.util import did_you_mean

#: The baselines' own hyperparameters (``baseline`` section of the trial config), one entry per preset;
#: sources in the module docstring.
BASELINE_RECIPES: dict[str, dict] = {
    "cql": {"algo": "cql", "hidden_units": [256, 256, 256], "actor_learning_rate": 1e-4,
            "critic_learning_rate": 3e-4, "temp_learning_rate": 1e-4, "alpha_learning_rate": 0.0,
            "n_action_samples": 10, "conservative_weight": 5.0},
    "iql": {"algo": "iql", "reward_scale": "return_range_1000", "actor_cosine_schedule": True,
            "actor_learning_rate": 3e-4, "critic_learning_rate": 3e-4, "expectile": 0.7, "weight_temp": 3.0,
            "max_weight": 100.0},
    "td3bc": {"algo": "td3bc", "actor_learning_rate": 3e-4, "critic_learning_rate": 3e-4, "alpha": 2.5,
              "target_smoothing_sigma": 0.2, "target_smoothing_clip": 0.5, "update_actor_interval": 2},
    "bc": {"algo": "bc", "hidden_units": [256, 256], "learning_rate": 3e-4},
    # IQL on Kitchen (``iql`` on a kitchen task, DOMAIN_VARIANTS): github.com/ikostrikov/implicit_q_learning
    # configs/kitchen_config.py = IQL paper (arXiv 2110.06169) App. B for Kitchen; d3rlpy / CORL have no
    # kitchen config. Rewards raw (train_offline.py normalises only hopper/halfcheetah/walker2d).
    "iql-kitchen": {"algo": "iql",
                    "actor_cosine_schedule": True,  # learner.py opt_decay_schedule="cosine" (every task)
                    "actor_learning_rate": 3e-4, "critic_learning_rate": 3e-4,  # kitchen_config.py
                    "expectile": 0.7,  # kitchen_config.py expectile
                    "weight_temp": 0.5,  # kitchen_config.py temperature (inverse temperature beta)
                    "max_weight": 100.0,  # actor.py: exp_a clipped at 100
                    "actor_dropout": 0.1},  # kitchen_config.py dropout_rate (policy MLP only)
    "cql-atari": {"algo": "discrete_cql", "learning_rate": 5e-5, "adam_eps": 1e-2 / 32, "alpha": 4.0,
                  "n_quantiles": 200, "target_update_interval": 2000, "reward_scale": "clip"},
    "bc-atari": {"algo": "discrete_bc", "learning_rate": 1e-3, "beta": 0.5},
}
#: What every baseline preset sets besides its recipe: no LM, no language loss, batch 256 (all four sources).
_BASELINE_COMMON = {"model": {"lm": None, "init": "random"}, "language": {"weight": 0.0},
                    "train": {"batch_size": 256}}
#: Batch sizes of the Atari baseline recipes (d3rlpy's discrete CQL reproduction: 32; DiscreteBCConfig's
#: default: 100) and LaMo's Atari evaluation protocol (``cfgs/config.yaml``, as ``lamo-atari``).
_ATARI_BASELINE = {"cql-atari": {"train": {"batch_size": 32}}, "bc-atari": {"train": {"batch_size": 100}}}
_ATARI_EVAL = {"eval": {"every_steps": 200, "episodes": 5}}
#: Per-domain variants of a method's recipe: ``{preset: {domain: the preset it means there}}`` (read through
#: :func:`get_preset`). The baselines' algorithms depend on
#: the action space (d3rlpy's CQL/BC for continuous actions, its DiscreteCQL/DiscreteBC for Atari), and
#: LaMo's and DT's official Atari scripts use other optimiser settings than their D4RL ones, so on an Atari
#: task ``lamo``, ``dt``, ``cql`` and ``bc`` mean their Atari recipes and one sweep can span domains. On
#: Kitchen, ``iql`` is IQL's published Kitchen recipe (``iql-kitchen``); the other baselines have no
#: published Kitchen or Reacher2d recipe in their sources (d3rlpy reproductions, CORL configs: locomotion,
#: AntMaze, Maze2d, Adroit only), so they keep their locomotion recipe there (docs/deviations.md).
#: ``wiki-rl``'s tied action head, extended positions and alignment loss are for vector-state tasks: it is
#: refused on Atari, with the fix.
DOMAIN_VARIANTS: dict[str, dict[str, str]] = {
    "lamo": {"atari": "lamo-atari"},
    "dt": {"atari": "dt-atari"},
    "cql": {"atari": "cql-atari"},
    "bc": {"atari": "bc-atari"},
    "iql": {"kitchen": "iql-kitchen"},
}

VARIANT_PRESETS: dict[str, dict] = {
    "lamo": {},
    "dt": {
        "model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full"},
        "language": {"weight": 0.0},
        "train": {"weight_decay": 1e-4, "warmup_steps": 10_000, "adam_eps": 1e-8},
    },
    "lamo-linear": {"model": {"embedding": "linear"}},
    "lamo-full": {"model": {"finetune": "full"}},
    "lamo-frozen": {"model": {"finetune": "frozen"}},
    "lamo-random-init": {"model": {"init": "random"}},
    "lamo-no-lm-loss": {"language": {"weight": 0.0}},
    "lamo-hopper": {"model": {"embedding": "linear"}, "language": {"weight": 0.0}},
    # Wiki-RL's main recipe (machelreid/can-wikipedia-help-offline-rl code/run.sh, experiment.py, utils.py,
    # decision_transformer/models/decision_transformer.py); AdamW eps 1e-6 (utils.py, with a pre-trained
    # LM) and lr 1e-4, clip 0.25, batch 64 are the defaults
    "wiki-rl": {"model": {"embedding": "linear", "finetune": "full",
                          "dropout": 0.2,  # run.sh --dropout 0.2 -> resid_pdrop
                          "attn_dropout": 0.1,  # decision_transformer.py: config.attn_pdrop = 0.1
                          "embd_dropout": 0.1,  # the pre-trained GPT-2 config's embd_pdrop, kept
                          "tied_action_head": True,  # run.sh --share_input_output_proj
                          "extend_positions": True},  # run.sh --extend_positions
                # run.sh --gpt_kmeans 1000 --gpt_kmeans_const 0.1, seq_trainer.py kmeans_anneal (5,000 steps):
                # AlignmentConfig's defaults are these values
                "alignment": {},
                "language": {"weight": 0.0},  # co-training only in lm_cotraining/, not in run.sh
                "train": {"weight_decay": 1e-4, "warmup_steps": 10_000}},  # experiment.py argument defaults
    **{name: {**copy.deepcopy(_BASELINE_COMMON), **copy.deepcopy(_ATARI_BASELINE.get(name, {})),
              **(copy.deepcopy(_ATARI_EVAL) if name in _ATARI_BASELINE else {}), "baseline": copy.deepcopy(recipe)}
       for name, recipe in BASELINE_RECIPES.items()},
    "lamo-atari": {
        "model": {"lora": {"rank": 32, "dropout": 0.0, "train_bias": False}},
        "language": {"weight": 0.0},
        "train": {"lr": 1e-3, "weight_decay": 0.01, "batch_size": 128, "grad_clip": 1.0, "adam_eps": 1e-8},
        "eval": {"every_steps": 200, "episodes": 5},
    },
    "dt-atari": {
        "model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full",
                  "arch": {"n_inner": None, "activation": "gelu_new"}},
        "language": {"weight": 0.0},
        "train": {"lr": 3e-4, "weight_decay": 0.1, "batch_size": 128, "grad_clip": 1.0, "adam_eps": 1e-8},
        "eval": {"every_steps": 200, "episodes": 5},
    },
    "dt-atari-official": {
        "model": {"lm": None, "init": "random", "embedding": "linear", "finetune": "full",
                  "arch": {"n_embd": 768, "n_inner": None, "activation": "gelu_new"}},
        "language": {"weight": 0.0},
        "train": {"lr": 3e-4, "weight_decay": 0.1, "batch_size": 128, "grad_clip": 1.0, "adam_eps": 1e-8},
        "eval": {"every_steps": 200, "episodes": 5},
    },
}


def get_preset(name: str, domain: str | None = None) -> dict:
    """A deep copy of preset ``name`` (a partial trial config); on a task of registry ``domain`` the preset
    :data:`DOMAIN_VARIANTS` maps it to there (``cql`` on ``atari``: ``cql-atari``).

    Raises:
        KeyError: unknown preset, with the closest name and the list of presets.
    """
    name = DOMAIN_VARIANTS.get(name, {}).get(domain or "", name)
    try:
        return copy.deepcopy(VARIANT_PRESETS[name])
    except KeyError:
        raise KeyError(f"unknown preset {name!r}.{did_you_mean(name, VARIANT_PRESETS)} "
                       f"Presets: {', '.join(VARIANT_PRESETS)}") from None


def leaves(d: dict, prefix: str = "") -> dict[str, object]:
    """``{"model.lm": None, ...}``: the dotted paths of a nested mapping's leaves (mappings recurse)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def overridden_by_base(preset: dict, base: dict, own: dict) -> list[tuple[str, object, object]]:
    """Fields a preset sets that ``base`` would replace with another value, and the variant's own fields
    (``own``) do not restate: ``[(dotted path, preset value, base value)]``.

    Such a mixture is refused by the sweep validation: with ``base: {model: {lm: X}}``, ``preset: dt``
    would otherwise become a randomly initialised copy of X's architecture, not the DT baseline.
    """
    mine, theirs = leaves(preset), leaves(base)
    stated = leaves(own)
    out = []
    for path, value in mine.items():
        if path in theirs and theirs[path] != value and path not in stated:
            out.append((path, value, theirs[path]))
    return out
