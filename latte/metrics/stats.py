"""Feature statistics and the metric formulas of StyleGAN-V's metric code (src/metrics/metric_utils.py,
frechet_video_distance.py, frechet_inception_distance.py, inception_score.py, video_inception_score.py).

- FeatureStats accumulates like StyleGAN-V's: float32 features, float64 running sum and sum of outer products;
  the covariance is the biased one (divided by n, not n - 1), `raw_cov / n - outer(mean, mean)`.
- frechet_distance is |mu_g - mu_r|^2 + tr(S_g + S_r - 2 sqrtm(S_g S_r)) with scipy's sqrtm, real part taken.
- inception_score splits the class probabilities into `num_splits` consecutive parts (after a seeded shuffle for
  the video IS) and returns mean and std of exp(mean KL(p(y|x) || p(y))).
"""
import os

import numpy as np
import scipy.linalg

# video_inception_score.py shuffles the C3D probabilities with RandomState(42) before splitting them
VIDEO_IS_SHUFFLE_SEED = 42


class FeatureStats:
    """Running statistics of detector features; `max_items` caps what is kept (later rows are dropped)."""

    def __init__(self, capture_all=False, capture_mean_cov=False, max_items=None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = []
        self.raw_mean = None
        self.raw_cov = None

    def is_full(self):
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, features):
        """Adds (N, D) features; rows past max_items are dropped."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {x.shape}")
        if self.max_items is not None:
            x = x[: max(self.max_items - self.num_items, 0)]
        if x.shape[0] == 0:
            return
        if self.num_features is None:
            self.num_features = x.shape[1]
            self.raw_mean = np.zeros([self.num_features], dtype=np.float64)
            self.raw_cov = np.zeros([self.num_features, self.num_features], dtype=np.float64)
        elif x.shape[1] != self.num_features:
            raise ValueError(f"features have {x.shape[1]} columns but earlier ones had {self.num_features}")
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def get_all(self):
        if not self.capture_all:
            raise ValueError("these statistics were gathered without capture_all")
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_mean_cov(self):
        if not self.capture_mean_cov:
            raise ValueError("these statistics were gathered without capture_mean_cov")
        if not self.num_items:
            raise ValueError("no features were gathered: the dataset gave no items")
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, cov

    # -- saving: an .npz written to a temporary name and renamed, so a crash never leaves a half file ----------
    def save(self, path):
        arrays = {"num_items": np.int64(self.num_items), "max_items": np.int64(-1 if self.max_items is None
                                                                               else self.max_items),
                  "capture_all": np.bool_(self.capture_all), "capture_mean_cov": np.bool_(self.capture_mean_cov)}
        if self.num_features is not None:
            arrays["num_features"] = np.int64(self.num_features)
            if self.capture_mean_cov:
                arrays.update(raw_mean=self.raw_mean, raw_cov=self.raw_cov)
            if self.capture_all:
                arrays["all_features"] = self.get_all()
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path):
        with np.load(path) as data:
            max_items = int(data["max_items"])
            stats = cls(bool(data["capture_all"]), bool(data["capture_mean_cov"]),
                        None if max_items < 0 else max_items)
            stats.num_items = int(data["num_items"])
            if "num_features" in data:
                stats.num_features = int(data["num_features"])
                if stats.capture_mean_cov:
                    stats.raw_mean, stats.raw_cov = data["raw_mean"], data["raw_cov"]
                if stats.capture_all:
                    stats.all_features = [data["all_features"]]
        return stats


def frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real):
    """FID/FVD of two Gaussians as StyleGAN-V computes it: scipy's sqrtm of sigma_gen @ sigma_real, real part of
    the total. (StyleGAN-V passes disp=False, which SciPy >= 1.16 deprecates; the returned root is the same.)"""
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def inception_score(probs, num_splits, shuffle_seed=None):
    """(mean, std) over `num_splits` parts of exp(E_x KL(p(y|x) || p(y))); probs is (N, classes).

    shuffle_seed: the video IS shuffles the rows with np.random.RandomState(seed) first (seed 42); the image IS
    does not. Parts are rows [i*N//splits, (i+1)*N//splits), N the number of rows (StyleGAN-V uses num_gen, the
    same number once the generated set is full).
    """
    probs = np.array(probs, copy=True)
    if probs.ndim != 2 or probs.shape[0] < num_splits:
        raise ValueError(f"inception_score needs (N, classes) probabilities with N >= num_splits={num_splits}, "
                         f"got shape {probs.shape}")
    if shuffle_seed is not None:
        np.random.RandomState(shuffle_seed).shuffle(probs)
    n = probs.shape[0]
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits: (i + 1) * n // num_splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))
