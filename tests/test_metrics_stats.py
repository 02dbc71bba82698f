"""latte.metrics.stats against straightforward references of StyleGAN-V's formulas on random features."""
import numpy as np
import pytest

from latte.metrics.stats import VIDEO_IS_SHUFFLE_SEED, FeatureStats, frechet_distance, inception_score

RTOL = 1e-6


def _features(seed, n=300, d=24, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * 0.5
    return (rng.normal(size=(n, d)) @ mix + shift).astype(np.float32)


def _reference_frechet(x_gen, x_real):
    """|mu_g - mu_r|^2 + tr S_g + tr S_r - 2 tr sqrt(S_r^1/2 S_g S_r^1/2), biased covariances, eigen-based roots."""
    mu_g, mu_r = x_gen.astype(np.float64).mean(0), x_real.astype(np.float64).mean(0)
    s_g, s_r = np.cov(x_gen.astype(np.float64), rowvar=False, bias=True), np.cov(x_real.astype(np.float64),
                                                                                 rowvar=False, bias=True)
    w, v = np.linalg.eigh(s_r)
    root_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_r @ s_g @ root_r)
    return np.sum((mu_g - mu_r) ** 2) + np.trace(s_g) + np.trace(s_r) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))


def _gathered(x, batch=37, max_items=None):
    stats = FeatureStats(capture_mean_cov=True, capture_all=True, max_items=max_items)
    for start in range(0, len(x), batch):
        stats.append(x[start:start + batch])
    return stats


def test_mean_cov_is_the_biased_covariance():
    x = _features(0)
    mean, cov = _gathered(x).get_mean_cov()
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=RTOL, atol=1e-9)


def test_frechet_distance_matches_reference():
    x_real, x_gen = _features(1), _features(2, shift=0.3)
    mu_r, s_r = _gathered(x_real).get_mean_cov()
    mu_g, s_g = _gathered(x_gen).get_mean_cov()
    ours, ref = frechet_distance(mu_g, s_g, mu_r, s_r), _reference_frechet(x_gen, x_real)
    assert ref > 1.0
    assert abs(ours - ref) <= RTOL * abs(ref)
    assert abs(frechet_distance(mu_r, s_r, mu_r, s_r)) < 1e-6 * np.trace(s_r)  # a set against itself


def test_max_items_keeps_the_first_rows():
    x = _features(3, n=100)
    stats = _gathered(x, batch=30, max_items=64)
    assert stats.num_items == 64 and stats.is_full()
    np.testing.assert_array_equal(stats.get_all(), x[:64])
    np.testing.assert_allclose(stats.get_mean_cov()[0], x[:64].astype(np.float64).mean(0), rtol=RTOL)


def test_save_load_round_trip(tmp_path):
    stats = _gathered(_features(4, n=50), max_items=40)
    path = str(tmp_path / "stats.npz")
    stats.save(path)
    again = FeatureStats.load(path)
    assert (again.num_items, again.max_items, again.num_features) == (40, 40, stats.num_features)
    np.testing.assert_array_equal(again.get_all(), stats.get_all())
    for a, b in zip(again.get_mean_cov(), stats.get_mean_cov()):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]  # no temporary left


def _probs(seed, n=200, classes=11):
    logits = np.random.default_rng(seed).normal(size=(n, classes)) * 2
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _reference_is(probs, splits):
    """exp(H(p(y)) - E_x H(p(y|x))) per part: the same KL written through entropies."""
    n, scores = len(probs), []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits].astype(np.float64)
        p_y = part.mean(0)
        scores.append(np.exp(-np.sum(p_y * np.log(p_y)) + np.mean(np.sum(part * np.log(part), axis=1))))
    return np.mean(scores), np.std(scores)


@pytest.mark.parametrize("shuffle", [False, True])
def test_inception_score_matches_reference(shuffle):
    probs = _probs(5)
    seed = VIDEO_IS_SHUFFLE_SEED if shuffle else None
    mean, std = inception_score(probs, num_splits=10, shuffle_seed=seed)
    order = np.random.RandomState(VIDEO_IS_SHUFFLE_SEED).permutation(len(probs)) if shuffle else np.arange(len(probs))
    ref_mean, ref_std = _reference_is(probs[order], 10)
    assert abs(mean - ref_mean) <= RTOL * ref_mean and abs(std - ref_std) <= RTOL * ref_std + 1e-7
    assert mean > 1.0
    np.testing.assert_array_equal(probs, _probs(5))  # the caller's array is not shuffled
