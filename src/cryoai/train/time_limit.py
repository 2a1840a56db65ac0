"""The time limit (``--max-minutes``): pure functions that size each stage of a run to the time left.

Under a limit of T seconds a run is laid out as

    warm start   ``warm_start_images``: at most WARM_SHARE·T by a cost model (fewer images
                 when T is short); a checkpoint follows it
    training     what is left after the finish's reserve (``finish_reserve``, planned once;
                 each re-plan keeps the time that plan reserved, ``keep_reserve``); the schedule
                 is compressed into it and the convergence monitor's checks are paid from it
    finish       ``plan_finish`` and ``rounds_that_fit``: from the cost per image of each pass,
                 measured as the passes run, as many refinement rounds (on as large a subset) as
                 fit in the time left, then a re-search of as many of the worst-fitting images as
                 fit in what is left after them (``research_that_fits``); the pass over all
                 particles and the final reconstruction always run, so their estimate is reserved first

Costs are wall seconds per image (under torchrun, of the whole run: the ranks share each pass),
multiplied by SAFETY before they are compared with the time left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

SAFETY = 1.25  # margin on measured costs: a shared machine's speed drifts
END_SECONDS = 20.0  # reserved for writing the outputs (STAR, checkpoint, report) after the finish: the report
# took 67 s on a 9-fold oversubscribed CPU, a few seconds on an idle one
WARM_SHARE = 0.15  # of the limit the warm start may take
# Warm-start cost, seconds per image of the subset (box 16, one thread of this project's 2-core
# CPU): 300 images took 5.7 s with 4 refinement passes and 5.9 s with 14, 1500 images 32.5 s
# with 14. The stochastic EM's fixed number of epochs dominates, so the subset is what shrinks
# under a short limit, not the passes. At box b the cost grows as (b/16)² (measured ×1.9–2.1 for
# box 24; benchmarks/warmstart_sizes.py). An error here is absorbed by the training budget, which
# is measured after the warm start.
WARM_PER_IMAGE_S = 0.022  # at WARM_COST_BOX
WARM_COST_BOX = 16
MIN_WARM_IMAGES = 200  # fewer do not find the structure
MIN_FINISH_SUBSET = 500  # fewer images than this make a refinement round not worth its cost
# Of the time after the mandatory passes, the finish's rounds may reserve this share, the training
# keeps the rest. The rounds are what improve the poses: at 10k SNR 0.1 the monitor's map was flat
# after its first check while each round still gained (4AKE 5.3° → 3.9° over 4 more rounds)
FINISH_SHARE = 0.7


def warm_start_images(limit_s: float | None, images: int, box: int = WARM_COST_BOX) -> int:
    """The warm-start subset size at ``box`` that fits WARM_SHARE of ``limit_s`` (None: no limit,
    ``images`` unchanged), never below MIN_WARM_IMAGES."""
    if limit_s is None:
        return images
    per_image_s = WARM_PER_IMAGE_S * (box / WARM_COST_BOX) ** 2
    return min(images, max(MIN_WARM_IMAGES, math.floor(WARM_SHARE * limit_s / per_image_s)))


STABILITY_ROWS = 1000  # the final check's encoder pass (train/final_check.py)


@dataclass
class FinishCosts:
    """Wall seconds per image of each pass of the finish."""

    predict_s: float  # encoder + local refinement
    encode_s: float  # the encoder alone (no refinement)
    refine_s: float  # local refinement from given poses (no encoder)
    reconstruct_s: float  # back-projection, the reconstruction's fixed cost spread over the images
    research_s: float = 0.0  # a global re-search, per re-searched image (0: not yet measured)
    render_s: float | None = None  # a projection scored against its image (fit scores, contrast; None: costed
    # as a back-projection, which compares twice the radius and so costs several times more)

    def round_s(self) -> float:
        """One refinement round, per image of the subset: reconstruct, then refine."""
        return self.reconstruct_s + self.refine_s

    def after_s(self, n: int) -> float:
        """The passes after the map, per particle of ``n``: the fit scores and the contrast scales
        (a render each) and the final check's two half maps (one back-projection in all) and its
        encoder pass over up to ``STABILITY_ROWS`` particles. Not counted: ``--classes`` and the
        ``--symmetry`` finish (their cost is logged). With the renders costed as back-projections
        (``render_s`` None), 10k-particle runs ended 84–105 s before their deadline."""
        render = self.reconstruct_s if self.render_s is None else self.render_s
        return 2 * render + self.reconstruct_s + min(n, STABILITY_ROWS) * self.encode_s / max(n, 1)


@dataclass(frozen=True)
class FinishPlan:
    subset: int  # particles in the refinement rounds
    rounds: int
    seconds: float  # estimated wall time, SAFETY included
    refine_all: bool = True  # False: the pass over all particles keeps the encoder's poses (no time to refine)


def mandatory_seconds(costs: FinishCosts, n: int, refine: bool = True) -> float:
    """The passes the finish cannot skip: a pose for each of ``n`` particles (encoder and
    refinement, or the encoder alone), the map from all, and what follows it (``after_s``)."""
    return SAFETY * n * ((costs.predict_s if refine else costs.encode_s) + costs.reconstruct_s + costs.after_s(n))


def finish_seconds(costs: FinishCosts, n: int, subset: int, rounds: int) -> float:
    """Estimated wall time (SAFETY included) of a finish on ``n`` particles with ``rounds`` on
    ``subset`` of them: the mandatory passes and the rounds."""
    return mandatory_seconds(costs, n) + SAFETY * rounds * min(subset, n) * costs.round_s()


def plan_finish(costs: FinishCosts, n: int, subset: int, rounds: int, seconds_left: float | None) -> FinishPlan:
    """The most rounds (≤ ``rounds``) on ``subset`` particles (≤ n) that fit in ``seconds_left``
    (None: no limit) after the mandatory passes; when not one fits, one round on the largest
    subset that does (≥ MIN_FINISH_SUBSET), else none; when not even the mandatory passes fit,
    none and the encoder's poses for all particles, unrefined (``refine_all`` False)."""
    subset = min(subset, n)
    if seconds_left is None:
        return FinishPlan(subset, rounds, finish_seconds(costs, n, subset, rounds))
    if seconds_left < mandatory_seconds(costs, n):  # not even the refined poses fit: the encoder's
        return FinishPlan(subset, 0, mandatory_seconds(costs, n, refine=False), refine_all=False)
    spare = seconds_left - mandatory_seconds(costs, n)
    per_round = SAFETY * subset * costs.round_s()
    fit = min(rounds, max(0, math.floor(spare / per_round))) if per_round > 0 else rounds
    if fit == 0 and rounds > 0:
        smaller = min(subset, math.floor(spare / (SAFETY * costs.round_s()))) if costs.round_s() > 0 else 0
        if smaller >= MIN_FINISH_SUBSET:
            subset, fit = smaller, 1
    return FinishPlan(subset, fit, finish_seconds(costs, n, subset, fit))


def _still_to_run(costs: FinishCosts, n_left_to_predict: int, n: int) -> float:
    """During the finish, the passes that must still run (SAFETY included): a pose for each of the
    ``n_left_to_predict`` particles not yet predicted, then the map from all ``n`` and what follows it."""
    return SAFETY * (n_left_to_predict * costs.predict_s + n * (costs.reconstruct_s + costs.after_s(n)))


def refined_poses_fit(costs: FinishCosts, n_left_to_predict: int, n: int, seconds_left: float) -> bool:
    """During the finish: whether refined poses for the ``n_left_to_predict`` particles still
    without one, then the map from all ``n`` and what follows it, fit in ``seconds_left``."""
    return _still_to_run(costs, n_left_to_predict, n) <= seconds_left


def searched_poses_fit(costs: FinishCosts, n_left_to_search: int, n_left_to_predict: int, n: int,
                       seconds_left: float) -> bool:
    """During the finish: whether a global search for ``n_left_to_search`` particles, then refined
    poses for ``n_left_to_predict`` more, the map from all ``n`` and what follows it, fit in
    ``seconds_left``."""
    return SAFETY * n_left_to_search * costs.research_s + _still_to_run(costs, n_left_to_predict, n) <= seconds_left


def rounds_that_fit(costs: FinishCosts, n_left_to_predict: int, n: int, subset: int, seconds_left: float) -> int:
    """During the finish: how many more rounds on ``subset`` fit in ``seconds_left``, after the
    pass over the ``n_left_to_predict`` particles not yet predicted and the map from all ``n``."""
    per_round = SAFETY * subset * costs.round_s()
    spare = seconds_left - _still_to_run(costs, n_left_to_predict, n)
    return max(0, math.floor(spare / per_round)) if per_round > 0 else 0


def research_that_fits(costs: FinishCosts, n_left_to_predict: int, n: int, seconds_left: float) -> int:
    """During the finish, once no more rounds run: how many images a global re-search fits in
    ``seconds_left`` after the passes that must follow (as ``rounds_that_fit``); 0 while its cost
    is unmeasured."""
    if costs.research_s <= 0:
        return 0
    spare = seconds_left - _still_to_run(costs, n_left_to_predict, n)
    return max(0, math.floor(spare / (SAFETY * costs.research_s)))


def finish_reserve(costs: FinishCosts, n: int, subset: int, rounds: int, seconds_left: float) -> FinishPlan:
    """What the training leaves for the finish from ``seconds_left``: the mandatory passes, and
    the rounds that fit in FINISH_SHARE of the rest (the training, and the monitor's map updates
    in it, keep the other part). When the refined mandatory passes do not fit, the encoder's poses are
    all the finish can give, so the training gets half of what their pass leaves (an untrained
    encoder's poses are worthless)."""
    mandatory = mandatory_seconds(costs, n)
    if seconds_left < mandatory:
        unrefined = mandatory_seconds(costs, n, refine=False)
        seconds = unrefined + 0.5 * max(seconds_left - unrefined, 0.0)
        return FinishPlan(min(subset, n), 0, seconds, refine_all=False)
    return plan_finish(costs, n, subset, rounds, mandatory + FINISH_SHARE * max(seconds_left - mandatory, 0.0))


def keep_reserve(costs: FinishCosts, n: int, subset: int, rounds: int, reserved: FinishPlan,
                 seconds_left: float) -> FinishPlan:
    """A re-plan of the finish's reserve during training, at new ``costs``: the time the first plan
    (``reserved``, from ``finish_reserve``) kept for the finish, more only if the mandatory passes
    no longer fit in it, with as many of ``rounds`` as fit in that time. Re-planned by
    ``finish_reserve`` instead, each check would hand the training FINISH_SHARE of the finish's
    time again (a 20-min run kept 6 rounds at its start and 2 by the end of its training, and
    finished with 1); keeping the first plan's rounds instead let a cost measured lower shrink it
    (a reserve of 15 min fell to 6 and the finish ran 1 round)."""
    if not reserved.refine_all:  # no rounds were reserved: the share of the unrefined plan again
        return finish_reserve(costs, n, subset, 0, seconds_left)
    seconds = max(reserved.seconds, mandatory_seconds(costs, n))
    plan = plan_finish(costs, n, reserved.subset, rounds, min(seconds, seconds_left))
    return replace(plan, seconds=max(plan.seconds, seconds))


def check_fits(train_seconds: float, budget: float, last_check_s: float, estimate_s: float) -> bool:
    """Whether a monitor check (as long as the last, or ``estimate_s`` if longer) fits in the
    training budget left."""
    return train_seconds + SAFETY * max(last_check_s, estimate_s) < budget
