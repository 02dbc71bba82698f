"""The random-stream table and the host-drawn label dropout (the official force_drop_ids)."""
import numpy as np
import pytest

from mindspore import Tensor

from latte.data import cache_builder, dataset
from latte.models.factory import create_latte
from latte.random_streams import Stream
from latte.training.loss import StepNoise
from latte.vae_training import frames

LATENT = (2, 1, 2, 2)  # (F, C, h, w) per sample: small, the draws' order is what matters here


def test_stream_table_has_no_duplicate_ids():
    ids = [member.value for member in Stream.__members__.values()]  # aliases (equal values) would appear here
    assert len(ids) == len(set(ids)), sorted(ids)
    for module in (dataset, cache_builder, frames):  # every stream user reads the table, none numbers its own
        assert not [name for name in vars(module) if name.endswith("_STREAM")], module.__name__


def test_training_noise_is_not_the_shuffle_stream():
    """Sample g's step inputs come from [seed, TRAIN_STEP, g], not from the shuffle's [seed, DATA_SHUFFLE, g]."""
    noise = StepNoise(seed=5, rank=0, start_step=0, batch_size=1, latent_shape=LATENT, num_timesteps=1000)
    t, eps, _, _ = noise.draw(3)
    rng = np.random.default_rng([5, Stream.TRAIN_STEP, 3])
    assert t == rng.integers(0, 1000, dtype=np.int32)
    np.testing.assert_array_equal(eps, rng.standard_normal(LATENT, dtype=np.float32))
    shuffle = np.random.default_rng([5, Stream.DATA_SHUFFLE, 3])
    assert t != shuffle.integers(0, 1000, dtype=np.int32) or not np.array_equal(
        eps, shuffle.standard_normal(LATENT, dtype=np.float32))


def test_host_label_dropout_rate_and_reproducibility():
    prob, count = 0.1, 20000
    noise = StepNoise(seed=0, rank=0, start_step=0, batch_size=count, latent_shape=LATENT, num_timesteps=1000,
                      drop_prob=prob)
    _, _, _, _, drop = noise(np.zeros((count, 1), np.float32))
    assert drop.dtype == np.int32 and set(np.unique(drop)) <= {0, 1}
    sigma = np.sqrt(prob * (1 - prob) / count)
    assert abs(drop.mean() - prob) < 4 * sigma, drop.mean()
    # one draw per global sample: two ranks with half the batch draw the same ids as one process
    halves = [StepNoise(seed=0, rank=r, start_step=0, batch_size=count // 2, latent_shape=LATENT,
                        num_timesteps=1000, num_ranks=2, drop_prob=prob)(np.zeros((count // 2, 1)))[4]
              for r in range(2)]
    np.testing.assert_array_equal(np.stack(halves, 1).reshape(-1), drop)
    # no dropout configured: never dropped
    none = StepNoise(seed=0, rank=0, start_step=0, batch_size=64, latent_shape=LATENT, num_timesteps=1000)
    assert not none(np.zeros((64, 1)))[4].any()
    with pytest.raises(ValueError, match="drop_prob=1.0"):
        StepNoise(0, 0, 0, 1, LATENT, 1000, drop_prob=1.0)


def test_timestep_power_draws_noisy_timesteps_more_often():
    """timestep_power p: t = floor(N u^(1/p)), so P(t >= 0.9 N) = 1 - 0.9^p; p = 1 is the official uniform draw."""
    count = 20000
    batch = np.zeros((count, 1), np.float32)
    for power in (1.0, 3.0):
        t = StepNoise(seed=0, rank=0, start_step=0, batch_size=count, latent_shape=LATENT, num_timesteps=1000,
                      timestep_power=power)(batch)[1]
        assert t.dtype == np.int32 and t.min() >= 0 and t.max() <= 999
        expected = 1 - 0.9**power
        assert abs(np.mean(t >= 900) - expected) < 4 * np.sqrt(expected * (1 - expected) / count), (power, t.mean())
        quartiles = np.histogram(t, bins=4, range=(0, 1000))[0] / count  # density ~ t^(p-1) -> CDF (t/N)^p
        np.testing.assert_allclose(quartiles, np.diff(np.linspace(0, 1, 5) ** power), atol=0.015)
    # the same seed and sample give the same timestep, whatever the batching
    one = StepNoise(seed=4, rank=0, start_step=3, batch_size=1, latent_shape=LATENT, num_timesteps=1000,
                    timestep_power=3.0)(np.zeros((1, 1)))[1]
    four = StepNoise(seed=4, rank=0, start_step=0, batch_size=4, latent_shape=LATENT, num_timesteps=1000,
                     timestep_power=3.0)(np.zeros((4, 1)))[1]
    assert one[0] == four[3]
    with pytest.raises(ValueError, match="timestep_power=0.5"):
        StepNoise(0, 0, 0, 1, LATENT, 1000, timestep_power=0.5)
    # a resume must keep the draw (states written before the key existed resume as before)
    from latte.config import ConfigError
    from latte.training.run_state import check_resume_settings

    with pytest.raises(ConfigError, match="timestep_power=6.0 but the state has timestep_power=1.0"):
        check_resume_settings({"seed": 0, "timestep_power": 1.0}, {"seed": 0, "timestep_power": 6.0}, "s.ckpt")
    check_resume_settings({"seed": 0}, {"seed": 0, "timestep_power": 6.0}, "s.ckpt")


def test_force_drop_ids_select_the_null_label(mode):
    net = create_latte("Latte-T/2", input_size=4, in_channels=1, num_frames=2, condition="class", num_classes=3,
                       class_dropout_prob=0.1)
    net.set_train(True)  # training mode alone drops nothing: the caller draws the dropout
    rng = np.random.default_rng(0)
    for p in net.trainable_params():  # the zero-initialized adaLN would hide the labels
        p.set_data(Tensor(0.3 * rng.standard_normal(p.shape).astype(np.float32)))
    table = net.y_embedder.embedding_table.asnumpy()
    labels = Tensor(np.array([0, 1, 2, 1], np.int32))
    drop = Tensor(np.array([1, 0, 1, 0], np.int32))
    dropped = net.y_embedder(labels, drop).asnumpy()
    np.testing.assert_array_equal(dropped, table[[3, 1, 3, 1]])  # null id = num_classes = 3
    np.testing.assert_array_equal(net.y_embedder(labels).asnumpy(), table[[0, 1, 2, 1]])
    x = Tensor(rng.standard_normal((4, 2, 1, 4, 4)).astype(np.float32))
    t = Tensor(np.array([1, 2, 3, 4], np.int32))
    null = Tensor(np.full(4, 3, np.int32))
    all_dropped = net(x, t, labels, force_drop_ids=Tensor(np.ones(4, np.int32))).asnumpy()
    np.testing.assert_allclose(all_dropped, net(x, t, null).asnumpy(), rtol=1e-6, atol=1e-6)
    assert np.abs(all_dropped - net(x, t, labels).asnumpy()).max() > 1e-3  # the labels do matter
