"""The approach's contact detector on a stream: how the stream is cut into
blocks does not change where the first confirmed contact is found."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_seccm.model.detect import ContactWatch, contact_fired


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 300),
    mode=st.sampled_from(["absolute", "rise", "either"]),
    confirm=st.integers(0, 6),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=30),
)
def test_blocks_do_not_change_the_contact(seed, n, mode, confirm, cuts) -> None:
    rng = np.random.default_rng(seed)
    i = rng.normal(0.0, 1e-12, n)
    i[rng.integers(0, n) :] += rng.uniform(0, 10e-12)  # a landing somewhere
    # the reference: the first sample of the first run of confirm + 1 fired
    fired = contact_fired(i, 3e-12, mode, 50)
    ref = next(
        (k for k in range(n - confirm) if fired[k : k + confirm + 1].all()),
        None,
    )
    w = ContactWatch(3e-12, mode, confirm)
    got, pos, j = None, 0, 0
    while pos < n and got is None:
        k = cuts[j % len(cuts)]
        got = w.feed(i[pos : pos + k])
        pos, j = pos + k, j + 1
    assert got == ref
