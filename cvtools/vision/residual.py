"""How far a feature lies outside what the known images have in common (the residual of ViM, Wang et al.
2022): its norm after removing the known images' top principal directions. An image of a kind the
dataset never showed keeps more of itself outside those directions than the known images do.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass
class Residual:
    mean: np.ndarray  # (d,) centre of the fitted features
    basis: np.ndarray  # (k, d) orthonormal principal directions

    def norms(self, z: np.ndarray) -> np.ndarray:
        c = np.atleast_2d(z).astype(np.float32) - self.mean
        return np.linalg.norm(c - (c @ self.basis.T) @ self.basis, axis=1)


@dataclass
class GroupResiduals:
    """Each group's own residual: a new image's norm outside the top principal directions of one group's
    images, the smallest over the groups. A near unknown shares what all the known images share (so the
    residual above misses it) without lying in any one group's span."""

    means: np.ndarray  # (groups, d)
    bases: np.ndarray  # (groups, k, d) orthonormal rows; zero rows where a group had too few images

    def norms(self, z: np.ndarray) -> np.ndarray:
        return self.per_group(z).min(1)

    def per_group(self, z: np.ndarray) -> np.ndarray:
        """(images, groups): each image's residual against each group."""
        # By products with the stacked means and bases: an (images, groups, d) array of differences
        # would take gigabytes for a large dataset's reference.
        z = np.atleast_2d(z).astype(np.float32)
        groups, k, d = self.bases.shape
        to_mean = (z * z).sum(1)[:, None] - 2 * z @ self.means.T + self._mean_norms[None]
        inside = (z @ self.bases.reshape(groups * k, d).T).reshape(len(z), groups, k) - self._offset[None]
        return np.sqrt(np.maximum(to_mean - (inside * inside).sum(-1), 0.0))

    # Of the means and bases alone: computed once, not for every image answered (the offset costs as
    # much as projecting one image).
    @cached_property
    def _mean_norms(self) -> np.ndarray:
        return (self.means * self.means).sum(1)

    @cached_property
    def _offset(self) -> np.ndarray:
        return np.einsum("gd,gkd->gk", self.means, self.bases)
