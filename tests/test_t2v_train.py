"""Text-to-video training (LatteT2V): the loss network against a torch / numpy reference (diffusers' model and
DDPM scheduler, the learned-range variational bound), the training scheduler's tables against diffusers', a
compiled train step in image mode (1 frame), the caption dropout drawn per sample from the seed; then train.py
on a tiny T2V with a tiny random T5 (2 steps), sample.py with a prompt on its EMA checkpoint, exact resume, and
the checkpoint back to a diffusers folder that LatteTransformer3DModel loads with identical outputs."""
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

import mindspore as ms  # noqa: E402
from mindspore import Tensor  # noqa: E402

import sample  # noqa: E402
import train  # noqa: E402
from latte.checkpoint_io import load_strict, read_meta  # noqa: E402
from latte.config import ConfigError, load_config  # noqa: E402
from latte.diffusion import create_diffusion  # noqa: E402
from latte.env import RunContext  # noqa: E402
from latte.models import load_latte, load_t5  # noqa: E402
from latte.models.latte_t2v import LatteT2V  # noqa: E402
from latte.options import TrainConfig  # noqa: E402
from latte.random_streams import Stream  # noqa: E402
from latte.text.tokenizer import T5Tokenizer  # noqa: E402
from latte.training.optim import create_optimizer, lr_schedule  # noqa: E402
from latte.training.step import TrainStep  # noqa: E402
from latte.training.text_loss import LatteT2VTrainLoss, null_caption  # noqa: E402
from latte.training.data import create_training_dataset  # noqa: E402
from tests.cache_support import write_tiny_vae  # noqa: E402
from tests.t2v_support import T5_TINY, train_sentencepiece  # noqa: E402
from tests.test_latte_t2v import PADDED_MASK, TINY, official_bias, random_reference  # noqa: E402
from tests.test_t5 import redraw  # noqa: E402
from tests.test_train_e2e import ckpt_params  # noqa: E402
from tools import latte_converter, t5_converter  # noqa: E402

LATENT, CHANNELS, WIDTH = TINY["sample_size"], TINY["in_channels"], TINY["caption_channels"]
TEXT_LENGTH = 16  # T5 tokens per caption in these tests
LOSS_RTOL = 2e-4


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """(T5 .ckpt, tokenizer folder): a tiny random transformers T5 (every weight re-drawn), converted."""
    root = tmp_path_factory.mktemp("t5")
    redraw(transformers.T5EncoderModel(T5_TINY), seed=1).save_pretrained(root / "text_encoder")
    train_sentencepiece(str(root / "tokenizer"))
    assert t5_converter.main(["--source", str(root / "text_encoder"), "--target", str(root / "t5.ckpt")]) == 0
    return str(root / "t5.ckpt"), str(root / "tokenizer")


def latte_t2v_from(ref):
    """Our LatteT2V with the torch reference's weights (the same names)."""
    net = LatteT2V(**TINY)
    load_strict(net, {k: v.numpy() for k, v in ref.state_dict().items()})
    return net


# ---------------------------------------------------------------------------------------------------------
# The loss against a reference
# ---------------------------------------------------------------------------------------------------------

def reference_terms(ref, x0, t, noise, states, mask):
    """(loss, mse, vb) per sample from diffusers' model and DDPMScheduler (linear betas, learned_range) and the
    improved-DDPM bound in numpy float64 (vb in bits; t == 0: the discretized Gaussian decoder NLL)."""
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                        beta_end=0.02, variance_type="learned_range")
    x0_t, noise_t, t_t = torch.from_numpy(x0), torch.from_numpy(noise), torch.from_numpy(t.astype(np.int64))
    x_t = scheduler.add_noise(x0_t, noise_t, t_t)  # (B, F, C, h, w): add_noise broadcasts over any layout
    with torch.no_grad():
        out = ref(x_t.permute(0, 2, 1, 3, 4), t_t, torch.from_numpy(states),  # diffusers' (B, C, F, h, w)
                  encoder_attention_mask=official_bias(mask, x0.shape[1])).sample.permute(0, 2, 1, 3, 4).numpy()
    eps, v = out[:, :, :CHANNELS].astype(np.float64), out[:, :, CHANNELS:].astype(np.float64)
    betas = scheduler.betas.numpy().astype(np.float64)
    ac = np.cumprod(1 - betas)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1 - ac_prev) / (1 - ac)
    post_logvar = np.log(np.append(post_var[1], post_var[1:]))
    x0d, xtd, noised = x0.astype(np.float64), x_t.numpy().astype(np.float64), noise.astype(np.float64)
    terms = []
    for i, step in enumerate(t):
        coef1 = betas[step] * np.sqrt(ac_prev[step]) / (1 - ac[step])
        coef2 = (1 - ac_prev[step]) * np.sqrt(1 - betas[step]) / (1 - ac[step])
        pred_x0 = np.sqrt(1 / ac[step]) * xtd[i] - np.sqrt(1 / ac[step] - 1) * eps[i]
        frac = (v[i] + 1) / 2
        logvar = frac * np.log(betas[step]) + (1 - frac) * post_logvar[step]
        mean = coef1 * pred_x0 + coef2 * xtd[i]
        if step == 0:
            vb = -discretized_log_likelihood(x0d[i], mean, 0.5 * logvar).mean() / math.log(2)
        else:
            true_mean = coef1 * x0d[i] + coef2 * xtd[i]
            kl = 0.5 * (-1 + logvar - post_logvar[step] + np.exp(post_logvar[step] - logvar)
                        + (true_mean - mean) ** 2 * np.exp(-logvar))
            vb = kl.mean() / math.log(2)
        mse = ((noised[i] - eps[i]) ** 2).mean()
        terms.append((mse + vb, mse, vb))
    return np.array(terms)  # (B, 3)


def discretized_log_likelihood(x, mean, log_scale):
    def cdf(z):  # the tanh approximation of the normal CDF the official code uses
        return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
    inv = np.exp(-log_scale)
    plus, minus = cdf(inv * (x - mean + 1 / 255)), cdf(inv * (x - mean - 1 / 255))
    log_plus = np.log(np.maximum(plus, 1e-12))
    log_one_minus = np.log(np.maximum(1 - minus, 1e-12))
    log_delta = np.log(np.maximum(plus - minus, 1e-12))
    return np.where(x < -0.999, log_plus, np.where(x > 0.999, log_one_minus, log_delta))


def test_loss_matches_diffusers_and_numpy_reference(text_files):
    """Cached T5 states with padding, a dropped caption (-> the null caption of ""), t = 0 (decoder NLL) and t > 0
    (KL): loss, mse and vb equal the reference; T5 in the step (token ids) gives the same losses."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref = random_reference(seed=3, video_length=2)  # diffusers adds its whole temporal table: 2 frames
    t5, tokenizer = load_t5(text_files[0]), T5Tokenizer(text_files[1])
    null = null_caption(tokenizer, t5, TEXT_LENGTH)
    assert null[1].tolist() == [[1] + [0] * (TEXT_LENGTH - 1)]  # "" is its </s> alone
    r = np.random.default_rng(0)
    frames = 2
    x0 = r.uniform(-1, 1, (3, frames, CHANNELS, LATENT, LATENT)).astype(np.float32)
    noise = r.standard_normal(x0.shape).astype(np.float32)
    t = np.array([0, 321, 999], np.int32)
    drop = np.array([0, 1, 0], np.int32)
    ids, mask = tokenizer(["a red fox", "a circle", "the sea"], TEXT_LENGTH)
    states = t5(Tensor(ids), Tensor(mask)).asnumpy()  # (3, L, D)
    assert (mask == 0).any(axis=1).all()  # every caption has padding

    want_states, want_mask = states.copy(), mask.copy()
    want_states[1], want_mask[1] = null[0][0], null[1][0]  # the dropped caption
    want = reference_terms(ref, x0, t, noise, want_states, want_mask).mean(axis=0)

    diffusion = create_diffusion("")  # 'linear', learned sigma: Latte-1's training diffusion
    cached = LatteT2VTrainLoss(latte_t2v_from(ref), diffusion, null)
    args = (Tensor(x0), Tensor(t), Tensor(noise), Tensor(np.zeros_like(x0)), Tensor(drop))
    got = np.array([v.asnumpy() for v in cached(*args, Tensor(states), Tensor(mask))])
    print(f"loss terms {got} vs reference {want}")
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL)
    in_step = LatteT2VTrainLoss(latte_t2v_from(ref), diffusion, null, text_encoder=t5)
    from_ids = np.array([v.asnumpy() for v in in_step(*args, Tensor(ids), Tensor(mask))])
    np.testing.assert_allclose(from_ids, got, rtol=1e-5)


def test_masked_softmax_in_every_formulation():
    """The cross-attention bias goes into softmax(x * scale + bias) alike in each kernel formulation."""
    from latte.kernels import ScaledSoftmax
    from latte.kernels.native import native_library

    ms.set_context(mode=ms.PYNATIVE_MODE)
    r = np.random.default_rng(4)
    x = r.standard_normal((2, 3, 5, 7)).astype(np.float32)  # (B, H, Nq, Nk) scores
    bias = ((1 - PADDED_MASK) * -10000.0).astype(np.float32).reshape(2, 1, 1, 7)
    z = x * 0.35 + bias
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    backends = ["composite", "builtin"] + (["native"] if native_library()[0] is not None else [])
    for backend in backends:
        got = ScaledSoftmax(0.35, backend)(Tensor(x), Tensor(bias)).asnumpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=backend)


def test_training_diffusion_is_diffusers_ddpm_learned_range():
    """The 'linear' GaussianDiffusion with learn_sigma is diffusers' DDPMScheduler(linear 1e-4..0.02, 1000,
    learned_range): the same betas and alphas_cumprod, and the same log variance from the variance channels."""
    diffusion = create_diffusion("")
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                        beta_end=0.02, variance_type="learned_range")
    np.testing.assert_allclose(diffusion.betas, scheduler.betas.numpy(), rtol=1e-6)
    np.testing.assert_allclose(diffusion.alphas_cumprod, scheduler.alphas_cumprod.numpy(), rtol=2e-6)
    v = np.linspace(-1, 1, 5).astype(np.float32)
    for step in (1, 17, 500, 999):  # t = 0: diffusers clamps log(0), we borrow t = 1's value (improved DDPM)
        want = scheduler._get_variance(step, torch.from_numpy(v)).numpy()
        frac = (v + 1) / 2
        got = frac * diffusion.log_betas[step] + (1 - frac) * diffusion.posterior_log_variance_clipped[step]
        np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.slow
def test_image_mode_compiled_step(text_files):
    """num_frames 1 (text-to-image): one compiled train step with T5 in the step trains the LatteT2V, not T5."""
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        t5, tokenizer = load_t5(text_files[0]), T5Tokenizer(text_files[1])
        net = LatteT2V(**dict(TINY, video_length=1))
        loss_net = LatteT2VTrainLoss(net, create_diffusion(""), null_caption(tokenizer, t5, TEXT_LENGTH),
                                     text_encoder=t5)
        step = TrainStep(loss_net, create_optimizer(net.trainable_params(), lr_schedule(1, 1e-3)), "none",
                         num_terms=2)
        t5_before = {p.name: p.asnumpy().copy() for p in t5.get_parameters()}
        before = {name: p.asnumpy().copy() for name, p in net.parameters_and_names()}
        r = np.random.default_rng(1)
        x = r.uniform(-1, 1, (2, 1, CHANNELS, LATENT, LATENT)).astype(np.float32)
        ids, mask = tokenizer(["a circle", "a square"], TEXT_LENGTH)
        stats, _, _, applied = step(Tensor(x), Tensor(np.array([5, 600], np.int32)),
                                    Tensor(r.standard_normal(x.shape).astype(np.float32)), Tensor(np.zeros_like(x)),
                                    Tensor(np.array([0, 1], np.int32)), Tensor(ids), Tensor(mask))
        assert bool(applied.asnumpy()) and np.isfinite(stats.asnumpy()).all()
        unchanged = sorted(name for name, p in net.parameters_and_names() if np.array_equal(p.asnumpy(), before[name]))
        # one frame: the temporal self-attention's softmax over a single key is 1 whatever q and k are
        assert unchanged == sorted(f"temporal_transformer_blocks.{i}.attn1.{n}.{w}" for i in range(TINY["num_layers"])
                                   for n in ("to_q", "to_k") for w in ("weight", "bias")), unchanged
        assert all(np.array_equal(p.asnumpy(), t5_before[p.name]) for p in t5.get_parameters())
    finally:
        ms.set_context(mode=previous)


# ---------------------------------------------------------------------------------------------------------
# train.py end to end
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_files(text_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("t2v_train")
    return dict(vae=write_tiny_vae(root / "vae.ckpt"), t5=text_files[0], tokenizer=text_files[1], root=root)


def train_args(files, out, *extra):
    """A tiny Latte-1-T on captioned synthetic shapes ('a red square moving left'), VAE 32 px -> 4x4 latents, PyNative."""
    return [str(a) for a in [
        "--model_name", "Latte-1-T", "--condition", "text", "--image_size", 32, "--num_frames", 2,
        "--device_target", "CPU", "--mode", 1, "--vae_checkpoint", files["vae"], "--text_encoder", files["t5"],
        "--tokenizer", files["tokenizer"], "--max_text_length", TEXT_LENGTH, "--caption_dropout_prob", 0.5,
        "--train_batch_size", 2, "--step_mode", True, "--ckpt_save_interval", 1, "--ckpt_max_keep", 5,
        "--data_config.train_data_type", "synthetic", "--data_config.synthetic_captions", True,
        "--data_config.num_videos", 4,
        "--data_config.num_parallel_workers", 1, "--data_config.sample_stride", 1, "--output_path", out, *extra]]


@pytest.fixture(scope="module")
def trained(run_files):
    out = run_files["root"] / "straight"
    assert train.main(train_args(run_files, out, "--max_steps", 2)) == 2
    return out


def test_caption_dropout_is_drawn_per_sample_from_the_seed(run_files, tmp_path):
    """The drop column is StepNoise's draw of (seed, TRAIN_STEP, global sample) < caption_dropout_prob, and
    text_ids / text_mask are the tokenized captions of the batch's videos."""
    cfg = load_config(TrainConfig, train_args(run_files, tmp_path, "--train_batch_size", 4, "--seed", 7))
    dataset, info = create_training_dataset(cfg, RunContext("CPU", 1), start_step=1, num_timesteps=1000)
    assert len(set(info.captions)) == 4 and all(" moving " in c for c in info.captions)
    batch = next(dataset.create_dict_iterator(num_epochs=1, output_numpy=True))
    assert batch["text_ids"].shape == batch["text_mask"].shape == (4, TEXT_LENGTH)
    latent_shape = (2, CHANNELS, 4, 4)
    for i in range(4):  # start_step 1 with batch 4: global samples 4..7
        rng = np.random.default_rng([7, Stream.TRAIN_STEP, 4 + i])
        assert batch["t"][i] == rng.integers(0, 1000, dtype=np.int32)
        np.testing.assert_array_equal(batch["noise"][i], rng.standard_normal(latent_shape, dtype=np.float32))
        rng.standard_normal(latent_shape, dtype=np.float32)  # the VAE posterior noise
        assert batch["drop"][i] == int(rng.random(dtype=np.float32) < 0.5)
    tokens = T5Tokenizer(run_files["tokenizer"])([c for c in info.captions], TEXT_LENGTH)
    rows = [np.flatnonzero((tokens[0] == ids).all(axis=1)) for ids in batch["text_ids"]]
    assert all(len(r) >= 1 for r in rows), "each row is the tokens of a caption (captions repeat across videos)"
    np.testing.assert_array_equal(batch["text_mask"], tokens[1][[r[0] for r in rows]])


def test_train_then_sample_with_a_prompt(trained, run_files, tmp_path):
    ema = trained / "ckpt" / "latte-0000002-ema.ckpt"
    meta = read_meta(str(ema))
    assert meta["kind"] == "latte_t2v" and meta["config"]["caption_channels"] == WIDTH
    assert meta["text_encoder"] == run_files["t5"] and meta["config"]["video_length"] == 2
    assert set(ckpt_params(ema)) == {p.name for p in LatteT2V(**meta["config"]).get_parameters()}  # no T5
    state = ms.load_checkpoint(str(trained / "ckpt" / "train_state-0000002.ckpt"))
    assert not [k for k in state if "SelfAttention" in k or k.endswith("shared.embedding_table")], "T5 in state"
    run_dir = sample.main(["--checkpoint", str(ema), "--prompt", "a circle", "--device_target", "CPU", "--mode", "1",
                           "--sampling_steps", "2", "--output_path", str(tmp_path)])  # the rest from the record
    assert os.path.getsize(os.path.join(run_dir, "000_a_circle.mp4")) > 0


def test_resume_is_exact(trained, run_files):
    split = run_files["root"] / "split"
    train.main(train_args(run_files, split, "--max_steps", 1))
    train.main(train_args(run_files, split, "--max_steps", 2, "--resume"))
    for name in ("latte-0000002.ckpt", "latte-0000002-ema.ckpt"):
        a, b = ckpt_params(trained / "ckpt" / name), ckpt_params(split / "ckpt" / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


def test_checkpoint_to_diffusers_folder_and_back(trained, tmp_path):
    """The trained EMA weights as a diffusers transformer folder: LatteTransformer3DModel.from_pretrained gives
    our outputs (padded mask included); converting the folder again gives the same weights."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ema = str(trained / "ckpt" / "latte-0000002-ema.ckpt")
    folder = tmp_path / "transformer"
    assert latte_converter.main(["--source", ema, "--target", str(folder)]) == 0
    ref = diffusers.LatteTransformer3DModel.from_pretrained(str(folder)).eval()
    r = np.random.default_rng(2)
    x = r.standard_normal((2, 2, CHANNELS, 4, 4)).astype(np.float32)
    t = np.array([3, 700])
    text = r.standard_normal((2, PADDED_MASK.shape[1], WIDTH)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x).permute(0, 2, 1, 3, 4), torch.from_numpy(t), torch.from_numpy(text),
                   encoder_attention_mask=official_bias(PADDED_MASK, 2)).sample.permute(0, 2, 1, 3, 4).numpy()
    got = load_latte(ema)(Tensor(x), Tensor(t.astype(np.int32)), Tensor(text), Tensor(PADDED_MASK)).asnumpy()
    assert np.abs(got - want).max() <= 5e-5
    assert latte_converter.main(["--source", str(folder), "--target", str(tmp_path / "back.ckpt")]) == 0
    a, b = ckpt_params(ema), ckpt_params(tmp_path / "back.ckpt")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra, needle", [
    (["--condition", "class"], "is a text-to-video LatteT2V: set condition: text"),
    (["--model_name", "Latte-T/2"], "takes no captions: with condition 'text' use a LatteT2V"),
    (["--text_encoder", ""], "text_encoder is empty"),
    (["--caption_dropout_prob", 1.0], "caption_dropout_prob=1.0"),
])
def test_config_errors_are_one_line(run_files, tmp_path, extra, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        load_config(TrainConfig, train_args(run_files, tmp_path) + [str(a) for a in extra])
    assert "\n" not in str(err.value)


def test_pretrained_of_another_width_is_refused(trained, run_files, tmp_path):
    """A LatteT2V checkpoint whose caption_channels differ from the text encoder's width: one line, at build."""
    ckpt = str(trained / "ckpt" / "latte-0000002-ema.ckpt")
    meta = read_meta(ckpt)
    meta["config"]["caption_channels"] = 4096
    other = tmp_path / "other.ckpt"
    other.write_bytes(open(ckpt, "rb").read())
    (tmp_path / "other.ckpt.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"caption_channels=4096 \(this run: 24\)"):
        train.main(train_args(run_files, tmp_path / "run", "--max_steps", 1, "--pretrained_model_path", other))
