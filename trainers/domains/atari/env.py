"""Atari games from pixels in two conventions: Dopamine's, for collecting data, and d4rl-atari's, which
LaMo evaluates in.

**Collection env** (:func:`make_atari_env`, ids ``lamo/<Game>-dqn-v0``). The offline Atari data LaMo
trains on (d4rl-atari ``[game]-medium-v0``, github.com/takuseno/d4rl-atari) are the DQN Replay Dataset of
Agarwal et al. 2020, "An Optimistic Perspective on Offline Reinforcement Learning" (ICML), recorded by
Dopamine's DQN agents (github.com/google/dopamine, ``dopamine/discrete_domains/atari_lib.py``
``create_atari_environment`` and ``run_experiment.py``). Their conventions, which the project's
collected data follow:

* the minimal action set of the game (Breakout 4 actions, Pong 6, Qbert 6);
* **sticky actions** with probability 0.25 (Machado et al. 2018, "Revisiting the Arcade Learning
  Environment"; Dopamine's ``sticky_actions=True``), done by ALE itself
  (``repeat_action_probability=0.25``);
* **frame skip 4** with a max over the last two raw frames, **84x84 grayscale** (uint8 0-255), no no-op
  starts, the end of the game (not a lost life) ends an episode: gymnasium's
  ``AtariPreprocessing(noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
  grayscale_obs=True)`` (gymnasium docs, "AtariPreprocessing");
* the **episode cap** of 27,000 agent steps = 108,000 frames (Dopamine ``max_steps_per_episode=27000``);
* rewards as the game pays them; the *stored* training reward is clipped to [-1, 1] by the collector,
  as Dopamine's runner does before a transition enters the replay buffer
  (``run_experiment.py`` ``_run_one_episode``: ``reward = np.clip(reward, -1, 1)``; :mod:`trainers.domains.atari.data`);
* with ``stack=True``, 4 stacked frames, oldest first, ``(4, 84, 84)`` uint8, zeros before the first
  frame. Datasets store single frames (``stack=False``) and the trainer stacks them on the fly with
  zeros before a trajectory's first frame, as LaMo's training buffer does
  (srzer/LaMo-2023 ``experiment-atari/buffer.py``).

**Evaluation env** (:func:`make_atari_eval_env`, the default of every Atari evaluation,
``atari.eval_env: d4rl-atari``). LaMo evaluates in d4rl-atari's env, not Dopamine's: LaMo
``experiment-atari/core.py`` builds ``gym.make(f'{game}-medium-v0', stack=4)``, i.e.
``d4rl_atari.envs.AtariEnv`` (d4rl-atari ``d4rl_atari/envs.py``) with its defaults
``sticky_action=False, clip_reward=False, terminal_on_life_loss=False``:

* ``<Game>NoFrameskip-v4``: **no sticky actions** (``repeat_action_probability`` 0), frame skip 1 in
  the emulator, minimal action set;
* gym's ``AtariPreprocessing`` with its defaults: **no-op starts** (a uniform 1..30 NOOP frames after
  each reset, drawn from the env's seeded generator), frame skip 4 with the max over the last two
  frames, 84x84 grayscale, game over ends the episode;
* gym's ``FrameStack(4)``, which **fills the stack with the first frame** at reset (not zeros);
* **raw rewards** (no clipping), so evaluation returns are game scores.

Here: ale-py's ``<Game>NoFrameskip-v4`` registration (repeat probability 0, frame skip 1, minimal
actions, 108,000-frame cap) + gymnasium's ``AtariPreprocessing`` (``noop_max=30``) +
``FrameStackObservation(4, padding_type="reset")``. gym 0.26's and gymnasium 1.x's wrappers implement the
same steps; LaMo's evaluation stops at ``max_timestep`` 4096 agent steps, far below either cap.
``atari.eval_env: dopamine`` evaluates in the collection env instead (with ``stack=True``).
"""

from __future__ import annotations

import gymnasium

#: game key -> ALE ROM name. Breakout and Pong are LaMo's; Qbert is the paper's third game.
GAMES: dict[str, str] = {"breakout": "Breakout", "pong": "Pong", "qbert": "Qbert"}
FRAME_SKIP = 4  # agent step = 4 emulator frames (Dopamine / DQN Nature)
SCREEN_SIZE = 84  # 84x84 grayscale (DQN Nature)
STACK = 4  # frames per state (DQN Nature; LaMo's buffer stack_frame=4)
STICKY_ACTION_P = 0.25  # Dopamine's sticky actions, as the DQN Replay data were collected
MAX_EPISODE_STEPS = 27_000  # agent steps = 108,000 frames (Dopamine max_steps_per_episode)
#: d4rl-atari's evaluation env (module docstring): gym ``AtariPreprocessing``'s default ``noop_max``, no
#: sticky actions (``<Game>NoFrameskip-v4``), frame stack filled with the first frame at reset.
EVAL_NOOP_MAX = 30
EVAL_STICKY_ACTION_P = 0.0
#: ``atari.eval_env`` values: the env :func:`make_atari_eval_env` builds.
EVAL_ENVS = ("d4rl-atari", "dopamine")


def env_id(game: str) -> str:
    """The project's gymnasium id of ``game`` (a key of :data:`GAMES`), e.g. ``lamo/Breakout-dqn-v0``."""
    return f"lamo/{GAMES[game]}-dqn-v0"


def make_atari_env(game: str, stack: bool = True, sticky_action_p: float = STICKY_ACTION_P,
                   max_episode_steps: int = MAX_EPISODE_STEPS, **ale_kwargs) -> gymnasium.Env:
    """Build ``game`` in the collection convention (Dopamine's; module docstring).

    Args:
        game: ``breakout``, ``pong`` or ``qbert``.
        stack: ``True``: observations ``(4, 84, 84)`` uint8 (oldest frame first, zeros before the first
            frame of an episode); ``False``: single frames ``(84, 84)`` uint8 (what datasets store).
        sticky_action_p: ALE's ``repeat_action_probability``.
        max_episode_steps: cap in agent steps (each = :data:`FRAME_SKIP` frames).
        ale_kwargs: passed to ``gymnasium.make("ALE/<Game>-v5", ...)`` (e.g. ``render_mode``).

    Returns:
        the wrapped env; ``env.unwrapped.ale.getRAM()`` reads the emulator RAM (128 bytes).

    Raises:
        KeyError: unknown ``game`` (the message lists the known ones).
    """
    import ale_py

    if game not in GAMES:
        raise KeyError(f"unknown Atari game {game!r}; known: {', '.join(GAMES)}")
    gymnasium.register_envs(ale_py)
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    env = gymnasium.make(f"ALE/{GAMES[game]}-v5", frameskip=1, repeat_action_probability=sticky_action_p,
                         full_action_space=False, max_episode_steps=max_episode_steps * FRAME_SKIP,
                         **ale_kwargs)
    env = AtariPreprocessing(env, noop_max=0, frame_skip=FRAME_SKIP, screen_size=SCREEN_SIZE,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    if stack:
        env = FrameStackObservation(env, STACK, padding_type="zero")
    return env


def make_atari_eval_env(game: str, convention: str = "d4rl-atari", **ale_kwargs) -> gymnasium.Env:
    """The env an Atari policy is evaluated in: stacked ``(4, 84, 84)`` uint8 observations, raw rewards.

    Args:
        game: ``breakout``, ``pong`` or ``qbert``.
        convention: ``d4rl-atari`` (default; LaMo's evaluation env, module docstring: no sticky actions,
            1-30 no-op starts, the stack filled with the first frame, ale-py's 108,000-frame cap) or
            ``dopamine`` (:func:`make_atari_env` with ``stack=True``: sticky actions 0.25, no no-op
            starts, zero padding, 27,000-step cap).
        ale_kwargs: passed to ``gymnasium.make`` (e.g. ``render_mode``).

    Raises:
        KeyError: unknown ``game``. ValueError: unknown ``convention`` (names the allowed values).
    """
    if convention == "dopamine":
        return make_atari_env(game, stack=True, **ale_kwargs)
    if convention != "d4rl-atari":
        raise ValueError(f"atari.eval_env must be one of {', '.join(EVAL_ENVS)}, got {convention!r}")
    import ale_py

    if game not in GAMES:
        raise KeyError(f"unknown Atari game {game!r}; known: {', '.join(GAMES)}")
    gymnasium.register_envs(ale_py)
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    # d4rl-atari d4rl_atari/envs.py: '{}NoFrameskip-v{}'.format(game, 0 if sticky_action else 4), v4 here
    env = gymnasium.make(f"{GAMES[game]}NoFrameskip-v4", **ale_kwargs)
    env = AtariPreprocessing(env, noop_max=EVAL_NOOP_MAX, frame_skip=FRAME_SKIP, screen_size=SCREEN_SIZE,
                             terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
    return FrameStackObservation(env, STACK, padding_type="reset")


def game_of(env_id_or_task_name: str) -> str:
    """The game key of an Atari env id (``lamo/Breakout-dqn-v0``) or task name (``breakout-medium``).

    Raises:
        KeyError: neither names a game of :data:`GAMES`.
    """
    for game in GAMES:
        if env_id_or_task_name == env_id(game) or env_id_or_task_name.split("-")[0] == game:
            return game
    raise KeyError(f"{env_id_or_task_name!r} is not an Atari env id or task of {', '.join(GAMES)}")


def register_atari_envs() -> None:
    """Register ``lamo/<Game>-dqn-v0`` for every game of :data:`GAMES` (idempotent)."""
    for game in GAMES:
        if env_id(game) not in gymnasium.registry:
            gymnasium.register(id=env_id(game), entry_point=make_atari_env, kwargs={"game": game},
                               disable_env_checker=True)
