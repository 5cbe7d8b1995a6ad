"""Multivariate relational control: a genetic search over image subsets.

Finds n of N images whose RDMs in two areas are as alike (``objective="align"``: RSA maximised)
or as unlike (``"disentangle"``: RSA minimised) as possible, as in Gifford et al. (Nature Human
Behaviour 2025). The algorithm, with every random draw from one ``numpy`` generator seeded by
*seed* (same inputs and seed, same result):

1. **Population**: *population* subsets of n distinct images, drawn uniformly.
2. **Fitness**: the RSA (:func:`berg_insilico.similarity.rsa`, Spearman by default) of the
   two areas' RDMs restricted to the subset, negated for ``"disentangle"``.
3. **Each generation**: the *elite* fittest subsets are kept unchanged (so the best fitness
   never decreases); every other child is bred from two parents, each the fittest of
   *tournament* subsets drawn at random: the child is n images drawn without replacement from
   the union of its parents' images (crossover), then each of its images is, with probability
   *mutation*, replaced by a random image not in the child.
4. After *generations* generations the fittest subset is returned, with its fitness history.

The result is compared with *n_random* random subsets of n images: their RSA distribution and the
fraction at least as extreme as the found subset (a Monte Carlo p-value, ``(1 + count) /
(1 + n_random)``). With ``validate=(rdm_a, rdm_b)`` of held-out subjects, the found subset and
the random subsets are also scored there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from berg_core import InvalidParameterError
from berg_insilico.similarity import _check_method, correlate

__all__ = ["GeneticResult", "multivariate_control"]

OBJECTIVES = ("align", "disentangle")


@dataclass
class GeneticResult:
    """What :func:`multivariate_control` found.

    Attributes
    ----------
    indices : numpy.ndarray
        The chosen images, sorted ``(n,)``.
    rsa : float
        Their RSA between the two areas.
    history : numpy.ndarray
        The best RSA after each generation ``(generations + 1,)`` (the initial population first).
    random_rsa : numpy.ndarray
        The RSA of *n_random* random subsets.
    p_value : float
        Fraction (Monte Carlo) of random subsets at least as extreme in the objective's
        direction.
    test_rsa, test_random_rsa : float and numpy.ndarray, or None
        The same on the held-out RDMs (``validate``).
    """

    objective: str
    method: str
    seed: int
    indices: np.ndarray
    rsa: float
    history: np.ndarray
    random_rsa: np.ndarray
    p_value: float
    test_rsa: float | None = None
    test_random_rsa: np.ndarray | None = None

    def to_hdf5(self, path: Any) -> Any:
        """Write everything needed to redo the figures to HDF5."""
        from berg_insilico.tables import write_hdf5

        data = {
            "indices": self.indices,
            "history": self.history,
            "random_rsa": self.random_rsa,
            "rsa": np.float64(self.rsa),
            "p_value": np.float64(self.p_value),
        }
        if self.test_rsa is not None:
            data |= {"test_rsa": np.float64(self.test_rsa), "test_random_rsa": self.test_random_rsa}
        attrs = {"objective": self.objective, "method": self.method, "seed": self.seed}
        return write_hdf5(path, {"search": data}, attrs)


def _integer(value: Any, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        allowed = f"{low} .. {high}" if high is not None else f">= {low}"
        raise InvalidParameterError(f"{name} must be an integer in {allowed}, got {value!r}")
    return int(value)


def _square(m: Any, name: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InvalidParameterError(f"{name} has shape {m.shape}; expected a square (N, N) RDM")
    return m


def multivariate_control(
    rdm_a: np.ndarray,
    rdm_b: np.ndarray,
    n: int,
    *,
    objective: str = "align",
    method: str = "spearman",
    population: int = 40,
    generations: int = 50,
    elite: int = 2,
    tournament: int = 3,
    mutation: float = 0.05,
    n_random: int = 1000,
    seed: int = 0,
    validate: tuple[np.ndarray, np.ndarray] | None = None,
) -> GeneticResult:
    """Search for n images that align or disentangle two RDMs (see the module docstring).

    Parameters
    ----------
    rdm_a, rdm_b : numpy.ndarray
        ``(N, N)`` RDMs of the two areas on the same N candidate images (selection subjects).
    n : int
        Subset size, 3 .. N - 1.
    objective : {"align", "disentangle"}
    method : {"spearman", "pearson"}
        The RSA's correlation.
    population, generations, elite, tournament : int
        Genetic-algorithm sizes (elite < population, tournament <= population).
    mutation : float
        Per-image mutation probability, in [0, 1].
    n_random : int
        Random subsets of the baseline.
    seed : int
        Seed of every random draw.
    validate : (numpy.ndarray, numpy.ndarray), optional
        Held-out subjects' RDMs of A and B on the same images.

    Returns
    -------
    GeneticResult

    Raises
    ------
    InvalidParameterError
        For mismatched RDMs, an unknown objective or method, or sizes out of range.
    """
    a, b = _square(rdm_a, "rdm_a"), _square(rdm_b, "rdm_b")
    if a.shape != b.shape:
        raise InvalidParameterError(f"rdm_a has shape {a.shape} and rdm_b {b.shape}; they differ")
    if objective not in OBJECTIVES:
        raise InvalidParameterError(f"objective={objective!r}; allowed: {', '.join(OBJECTIVES)}")
    _check_method(method)
    n_images = a.shape[0]
    n = _integer(n, "n", 3, n_images - 1)
    population = _integer(population, "population", 2)
    generations = _integer(generations, "generations", 0)
    elite = _integer(elite, "elite", 0, population - 1)
    tournament = _integer(tournament, "tournament", 1, population)
    n_random = _integer(n_random, "n_random", 1)
    if (
        isinstance(mutation, bool)
        or not isinstance(mutation, (int, float))
        or not (0.0 <= mutation <= 1.0)
    ):
        raise InvalidParameterError(f"mutation must be a number in [0, 1], got {mutation!r}")
    if validate is not None:
        va, vb = (_square(m, f"validate[{i}]") for i, m in enumerate(validate))
        if va.shape != a.shape or vb.shape != a.shape:
            raise InvalidParameterError(
                f"validate RDMs have shapes {va.shape}, {vb.shape}; expected {a.shape}"
            )
    sign = 1.0 if objective == "align" else -1.0
    rows, cols = np.triu_indices(n, k=1)

    def score(subset: np.ndarray, x: np.ndarray = a, y: np.ndarray = b) -> float:
        i, j = subset[rows], subset[cols]
        return correlate(x[i, j], y[i, j], method)

    rng = np.random.default_rng(seed)
    pop = [np.sort(rng.choice(n_images, n, replace=False)) for _ in range(population)]
    fitness = np.array([sign * score(s) for s in pop])
    history = [fitness.max()]
    for _ in range(generations):
        order = np.argsort(-fitness, kind="stable")
        children = [pop[i] for i in order[:elite]]
        child_fitness = [fitness[i] for i in order[:elite]]
        while len(children) < population:
            parents = []
            for _ in range(2):
                entrants = rng.choice(population, tournament, replace=False)
                parents.append(pop[entrants[np.argmax(fitness[entrants])]])
            pool = np.union1d(parents[0], parents[1])
            child = rng.choice(pool, n, replace=False)
            mutate = rng.random(n) < mutation
            if mutate.any():
                outside = np.setdiff1d(np.arange(n_images), child)
                child[mutate] = rng.choice(outside, int(mutate.sum()), replace=False)
            child = np.sort(child)
            children.append(child)
            child_fitness.append(sign * score(child))
        pop, fitness = children, np.array(child_fitness)
        history.append(fitness.max())
    best = pop[int(np.argmax(fitness))]
    random_sets = [rng.choice(n_images, n, replace=False) for _ in range(n_random)]
    random_rsa = np.array([score(s) for s in random_sets])
    best_rsa = score(best)
    p = (1 + np.sum(sign * random_rsa >= sign * best_rsa)) / (1 + n_random)
    result = GeneticResult(
        objective=objective,
        method=method,
        seed=int(seed),
        indices=best,
        rsa=best_rsa,
        history=sign * np.array(history),
        random_rsa=random_rsa,
        p_value=float(p),
    )
    if validate is not None:
        result.test_rsa = score(best, va, vb)
        result.test_random_rsa = np.array([score(s, va, vb) for s in random_sets])
    return result
