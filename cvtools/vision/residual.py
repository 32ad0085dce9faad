"""How far a feature lies outside what the known images have in common (the residual of ViM, Wang et al.
2022): its norm after removing the known images' top principal directions. An image of a kind the
dataset never showed keeps more of itself outside those directions than the known images do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Residual:
    mean: np.ndarray  # (d,) centre of the fitted features
    basis: np.ndarray  # (k, d) orthonormal principal directions

    def norms(self, z: np.ndarray) -> np.ndarray:
        c = np.atleast_2d(z).astype(np.float32) - self.mean
        return np.linalg.norm(c - (c @ self.basis.T) @ self.basis, axis=1)
