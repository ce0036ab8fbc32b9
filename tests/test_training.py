"""blender_lib.training: the one rule by which an epoch beats the best so far."""

from __future__ import annotations

import math

from blender_lib.training import improves


def test_an_epoch_must_strictly_beat_the_best_and_nan_never_wins():
    assert improves({"acc": 0.8}, {"acc": 0.7}, "acc", higher_is_better=True)
    assert not improves({"acc": 0.7}, {"acc": 0.7}, "acc", higher_is_better=True)  # a tie keeps the earlier epoch
    assert improves({"rank": 1.5}, {"rank": 2.0}, "rank", higher_is_better=False)
    assert not improves({"rank": 2.5}, {"rank": 2.0}, "rank", higher_is_better=False)
    assert improves({"acc": 0.1}, {"acc": math.nan}, "acc", higher_is_better=True)  # nothing to beat yet
    assert not improves({"acc": math.nan}, {"acc": 0.5}, "acc", higher_is_better=True)
    assert improves({}, {}, "acc", higher_is_better=True)
