"""An SB3 model as a genba policy (reset/act on the raw observation): RL runs, BC clones and residual learners."""

from __future__ import annotations

from typing import Any

import numpy as np


class SB3Policy:
    """An SB3 model's deterministic action for a raw observation, normalised as in training."""

    def __init__(self, model, vecnormalize=None) -> None:
        self.model = model
        self.vecnormalize = vecnormalize if vecnormalize is not None and vecnormalize.norm_obs else None

    def reset(self) -> None:
        """SB3's MLP policies are feed-forward: nothing to clear."""

    def act(self, obs: Any) -> np.ndarray:
        x = self.vecnormalize.normalize_obs(obs) if self.vecnormalize is not None else obs
        action, _ = self.model.predict(x, deterministic=True)
        return action
