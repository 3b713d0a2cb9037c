"""Atari games from pixels with the DQN-Replay conventions, in one place for data collection and evaluation.

The offline Atari data LaMo trains on (d4rl-atari ``[game]-medium-v0``, github.com/takuseno/d4rl-atari)
are the DQN Replay Dataset of Agarwal et al. 2020, "An Optimistic Perspective on Offline Reinforcement
Learning" (ICML), recorded by Dopamine's DQN agents (github.com/google/dopamine,
``dopamine/discrete_domains/atari_lib.py`` and ``run_experiment.py``). Their conventions, which every
env built here follows:

* the minimal action set of the game (Breakout 4 actions, Pong 6, Qbert 6);
* **sticky actions** with probability 0.25 (Machado et al. 2018, "Revisiting the Arcade Learning
  Environment"; Dopamine's ``sticky_actions=True``), done by ALE itself
  (``repeat_action_probability=0.25``);
* **frame skip 4** with a max over the last two raw frames, **84x84 grayscale** (uint8 0-255), no no-op
  starts, the end of the game (not a lost life) ends an episode: gymnasium's
  ``AtariPreprocessing(noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
  grayscale_obs=True)`` (gymnasium docs, "AtariPreprocessing");
* the **episode cap** of 27,000 agent steps = 108,000 frames (Dopamine ``max_steps_per_episode=27000``);
* **4 stacked frames**, oldest first, ``(4, 84, 84)`` uint8: gymnasium's ``FrameStackObservation`` with
  zero padding before the first frame, the padding LaMo's training buffer uses
  (srzer/LaMo-2023 ``experiment-atari/buffer.py``). Datasets store single frames (``stack=False``) and
  the trainer stacks them on the fly (:mod:`trainers.domains.atari.data`).

Env ids ``lamo/<Game>-dqn-v0`` (e.g. ``lamo/Breakout-dqn-v0``) are registered by
:func:`trainers.envs.register_envs`; ``make_env("lamo/Breakout-dqn-v0", stack=False)`` gives single frames.
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


def env_id(game: str) -> str:
    """The project's gymnasium id of ``game`` (a key of :data:`GAMES`), e.g. ``lamo/Breakout-dqn-v0``."""
    return f"lamo/{GAMES[game]}-dqn-v0"


def make_atari_env(game: str, stack: bool = True, sticky_action_p: float = STICKY_ACTION_P,
                   max_episode_steps: int = MAX_EPISODE_STEPS, **ale_kwargs) -> gymnasium.Env:
    """Build ``game`` with the conventions of the module docstring.

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


def register_atari_envs() -> None:
    """Register ``lamo/<Game>-dqn-v0`` for every game of :data:`GAMES` (idempotent)."""
    for game in GAMES:
        if env_id(game) not in gymnasium.registry:
            gymnasium.register(id=env_id(game), entry_point=make_atari_env, kwargs={"game": game},
                               disable_env_checker=True)
