"""What drives the robot in the viewer: the scripted expert or a trained policy (run dir or bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from genba.errors import GenbaError


class ActorError(GenbaError):
    """No way to drive this env: no expert for its task, or a policy that cannot load."""


class ExpertActor:
    """The scenario's scripted expert (sim.experts)."""

    def __init__(self, env):
        from sim.experts import make_expert

        try:
            self._expert = make_expert(env)
        except (KeyError, ValueError) as exc:
            raise ActorError(f"no scripted expert for this scenario: {exc}; use --policy RUN_OR_BUNDLE") from None
        self.label = "expert"

    def reset(self) -> None:
        self._expert.reset()

    def act(self, obs: Any) -> np.ndarray:
        return self._expert.act(obs)


class PolicyActor:
    """A trained policy, loaded the way `genba eval` loads it (run directory, snapshot or bundle)."""

    def __init__(self, act: Callable[[Any], np.ndarray], description: dict[str, Any]):
        self._act, self.description = act, description
        self.label = f"{description.get('kind', 'policy')}: {description.get('path')}"

    @classmethod
    def load(cls, target: str | Path, which: str = "best", device: str = "cpu") -> "PolicyActor":
        try:
            from policies.evaluate import load_policy
        except ImportError as exc:
            raise ActorError(f"--policy needs the policies package ({exc})") from None
        act, desc = load_policy(target, which=which, device=device)
        return cls(act, desc)

    @property
    def scenario(self) -> str | None:
        return self.description.get("scenario")

    @property
    def robot(self) -> str | None:
        return self.description.get("robot")

    def reset(self) -> None:
        pass  # the policies are feed-forward: nothing to clear between episodes

    def act(self, obs: Any) -> np.ndarray:
        return self._act(obs)
