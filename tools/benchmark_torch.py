"""The PyTorch side of `tools/benchmark.py compare`: the official Latte's computation in torch, timed the same
way as latte-ms (same shapes, same step boundaries).

The model is tests/torch_latte.py (the official Vchitect/Latte layout and math: timm's Mlp with tanh GELU, the
'math' attention, LayerNorm without affine); the loss is the official improved-DDPM objective (MSE on eps plus
the variational bound on the learned variance, linear betas); the optimizer is torch.optim.AdamW as the
official train.py builds it; a sampling step is one DDIM update (eta 0) through the official p_mean_variance.
Run through the compare command, which starts it as `python -m tools.benchmark ... --peer torch` from the
repository root.
"""
import math

import numpy as np
import torch

from tests.torch_latte import TorchLatte

TIMESTEPS = 1000
LATENT_CHANNELS = 4


def _schedule():
    betas = np.linspace(1e-4, 0.02, TIMESTEPS, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    abar_prev = np.append(1.0, abar[:-1])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    tables = dict(
        betas=betas, abar=abar, abar_prev=abar_prev,
        log_var_clipped=np.log(np.append(post_var[1], post_var[1:])),
        coef1=betas * np.sqrt(abar_prev) / (1.0 - abar), coef2=(1.0 - abar_prev) * np.sqrt(1.0 - betas) / (1.0 - abar),
    )
    return {k: torch.from_numpy(v) for k, v in tables.items()}


def _at(table, t):
    return table[t].float().view(-1, 1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1, 1) over (B, F, C, H, W)


def _mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


def _p_mean_var(tab, out, x_t, t):
    eps, v = out[:, :, :LATENT_CHANNELS], out[:, :, LATENT_CHANNELS:]
    frac = (v + 1) / 2
    log_var = frac * _at(torch.log(tab["betas"]), t) + (1 - frac) * _at(tab["log_var_clipped"], t)
    x0 = torch.sqrt(1.0 / _at(tab["abar"], t)) * x_t - torch.sqrt(1.0 / _at(tab["abar"], t) - 1) * eps
    mean = _at(tab["coef1"], t) * x0 + _at(tab["coef2"], t) * x_t
    return mean, log_var, x0, eps


def _approx_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def training_loss(model, tab, x0, t, noise, y):
    """The official training_losses for a learned-range model: mse(eps) + vb (eps detached inside vb)."""
    x_t = torch.sqrt(_at(tab["abar"], t)) * x0 + torch.sqrt(1 - _at(tab["abar"], t)) * noise
    out = model(x_t, t, y)
    frozen = torch.cat([out[:, :, :LATENT_CHANNELS].detach(), out[:, :, LATENT_CHANNELS:]], dim=2)
    mean, log_var, _, _ = _p_mean_var(tab, frozen, x_t, t)
    true_mean = _at(tab["coef1"], t) * x0 + _at(tab["coef2"], t) * x_t
    true_log_var = _at(tab["log_var_clipped"], t)
    kl = 0.5 * (-1.0 + log_var - true_log_var + torch.exp(true_log_var - log_var)
                + (true_mean - mean) ** 2 * torch.exp(-log_var))
    centered = x0 - mean
    inv_std = torch.exp(-0.5 * log_var)
    cdf_plus, cdf_min = _approx_cdf(inv_std * (centered + 1 / 255)), _approx_cdf(inv_std * (centered - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus = torch.log((1 - cdf_min).clamp(min=1e-12))
    delta = cdf_plus - cdf_min
    log_probs = torch.where(x0 < -0.999, log_cdf_plus,
                            torch.where(x0 > 0.999, log_one_minus, torch.log(delta.clamp(min=1e-12))))
    vb = torch.where(t == 0, _mean_flat(-log_probs), _mean_flat(kl)) / math.log(2.0)
    return (_mean_flat((noise - out[:, :, :LATENT_CHANNELS]) ** 2) + vb).mean()


def ddim_step(model, tab, x, t, y):
    with torch.no_grad():
        out = model(x, t, y)
        _, _, x0, _ = _p_mean_var(tab, out, x, t)
        eps = (torch.sqrt(1.0 / _at(tab["abar"], t)) * x - x0) / torch.sqrt(1.0 / _at(tab["abar"], t) - 1)
        prev = _at(tab["abar_prev"], t)
        return x0 * torch.sqrt(prev) + torch.sqrt(1 - prev) * eps


def step_function(task, spec, args):
    """One step of task forward | train | sample on the torch Latte of `spec`, as a function to time."""
    torch.manual_seed(0)
    b, f, s = args.batch_size, args.num_frames, args.latent_size
    model = TorchLatte(input_size=s, num_frames=f, num_classes=101, condition=args.condition, **spec)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((b, f, LATENT_CHANNELS, s, s)).astype(np.float32))
    t = torch.from_numpy(rng.integers(0, TIMESTEPS, b))
    y = torch.from_numpy(rng.integers(0, 101, b)) if args.condition else None
    tab = _schedule()
    if task == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                model(x, t, y)
    elif task == "sample":
        model.eval()

        def step():
            ddim_step(model, tab, x, t, y)
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)  # the official train.py's
        noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))

        def step():
            loss = training_loss(model, tab, x, t, noise, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return step


def vae_functions(args):
    """(encode one frame, decode one latent) of a random sd-vae-ft-mse AutoencoderKL (diffusers), to time."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=256).eval()
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.uniform(-1, 1, (1, 3, args.image_size, args.image_size)).astype(np.float32))
    latent = torch.from_numpy(rng.standard_normal((1, 4, args.image_size // 8, args.image_size // 8))
                              .astype(np.float32))

    def encode():
        with torch.no_grad():
            return vae.encode(frame).latent_dist.mean

    def decode():
        with torch.no_grad():
            return vae.decode(latent).sample

    return encode, decode
