"""The training objective as a Cell: uniform random timesteps, fresh Gaussian noise, mean diffusion loss.

Usable as the forward function of a MindSpore train step (value_and_grad with has_aux=True):
    loss_net = DiffusionLoss(model, create_diffusion(""), seed=1234 + rank)
    loss, mse, vb = loss_net(latents, y)
"""
import mindspore as ms
from mindspore import Tensor, nn, ops

# seed2 of each random stream, so timesteps and noise come from different streams of one seed.
TIMESTEP_STREAM = 1
NOISE_STREAM = 2


class DiffusionLoss(nn.Cell):
    """construct(x_start, y=None, t=None, noise=None) -> (loss, mse, vb), each the mean over the batch.

    t (B,) int32 is drawn uniformly from [0, num_timesteps) and noise ~ N(0, I) like x_start when not given.
    seed=None draws nondeterministic streams; give each data-parallel rank its own seed.
    draw_inputs=False: the caller always passes t and noise (train.py draws them on the host), and no random
    operator is built (MindSpore 2.10 deprecates UniformInt and warns when one is created).
    mse / vb are zero where the loss type has no such term (see GaussianDiffusion.training_losses).
    """

    def __init__(self, model, diffusion, seed=None, draw_inputs=True):
        super().__init__()
        self.model = model
        self.diffusion = diffusion
        seed, t_stream, noise_stream = (0, 0, 0) if seed is None else (int(seed), TIMESTEP_STREAM, NOISE_STREAM)
        self.draw_timesteps = ops.UniformInt(seed=seed, seed2=t_stream) if draw_inputs else None
        self.draw_noise = ops.StandardNormal(seed=seed, seed2=noise_stream) if draw_inputs else None
        self.t_low = Tensor(0, ms.int32)
        self.t_high = Tensor(diffusion.num_timesteps, ms.int32)

    def construct(self, x_start, y=None, t=None, noise=None):
        if t is None:
            t = self.draw_timesteps((x_start.shape[0],), self.t_low, self.t_high)
        if noise is None:
            noise = self.draw_noise(x_start.shape).astype(x_start.dtype)
        terms = self.diffusion.training_losses(self.model, x_start, t, y, noise)
        return terms["loss"].mean(), terms["mse"].mean(), terms["vb"].mean()
