"""The training objective as a Cell: the mean diffusion loss for given timesteps and noise.

Usable as the forward function of a MindSpore train step (value_and_grad with has_aux=True):
    loss_net = DiffusionLoss(model, create_diffusion(""))
    loss, mse, vb = loss_net(latents, y, t, noise)
The caller draws t and noise (latte.training draws them on the host from seeded streams, so a resumed or
data-parallel run draws exactly what one uninterrupted process would).
"""
from mindspore import nn


class DiffusionLoss(nn.Cell):
    """construct(x_start, y, t, noise, force_drop_ids=None) -> (loss, mse, vb), each the mean over the batch.

    t (B,) int32 in [0, num_timesteps), noise like x_start, y (B,) int32 labels or None, force_drop_ids (B,)
    int32 label dropout passed to the model (1: null label). mse / vb are zero where the loss type has no such
    term (see GaussianDiffusion.training_losses).
    """

    def __init__(self, model, diffusion):
        super().__init__()
        self.model = model
        self.diffusion = diffusion

    def construct(self, x_start, y, t, noise, force_drop_ids=None):
        terms = self.diffusion.training_losses(self.model, x_start, t, y, noise, force_drop_ids)
        return terms["loss"].mean(), terms["mse"].mean(), terms["vb"].mean()
