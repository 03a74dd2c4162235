import numpy as np

from leakaudit.data.synthetic import make_shapes


def test_generator_is_seeded_balanced_and_masked():
    a, b = make_shapes(24, seed=5, size=40), make_shapes(24, seed=5, size=40)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].image, make_shapes(24, seed=6, size=40)[0].image)
    assert a.counts() == {"disc": 6, "square": 6, "triangle": 6, "cross": 6}
    for s in a:
        assert s.image.shape == (40, 40, 3) and s.image.dtype == np.float32
        assert s.image.min() >= 0 and s.image.max() <= 1
        assert s.region.dtype == bool and 0.03 < s.region.mean() < 0.5
