"""blender_lib.notebook.source_excerpt: the chapters show the library's own code, not a copy."""

from __future__ import annotations

import pytest

from blender_lib import rankers, zooter
from blender_lib.notebook import source_excerpt


def test_an_excerpt_is_the_library_source_dedented_and_in_order():
    text = source_excerpt(rankers.pair_loss, zooter.RouterModel.forward)
    assert text.startswith("def pair_loss(") and "F.logsigmoid" in text
    method = text.split("\n\n")[-1]
    assert method.startswith("def forward(self, input_ids") and "kl_loss(" in method  # a method, dedented
    with pytest.raises(ValueError, match="at least one"):
        source_excerpt()
