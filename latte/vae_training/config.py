"""VAETrainConfig: every key of tools/capture_frames.py and tools/train_vae.py (one yaml serves both).

Key names follow the reference tutorial where it has one (`ae_frame_sample_prob`, `frame_height`,
`autoencoder_acc_steps`, `disc_start`, `kl_weight` ...); the VAE architecture keys are diffusers' config.json
names, which is what the saved sidecar records.
"""
import dataclasses
from typing import List, Optional

from latte.config import ConfigError, field
from latte.data.config import DataConfig
from latte.options import DeviceOptions

RECONSTRUCTION_LOSSES = ("l1", "l2")
CHANNEL_CHOICES = (1, 3)
DEFAULT_BETAS = (0.5, 0.999)  # the reference tutorial's Adam betas for both networks (GAN practice)


@dataclasses.dataclass
class VAETrainConfig(DeviceOptions):
    output_path: str = field("outputs/vae", "run folder: config, log, metrics.csv, samples/, ckpt/, vae.ckpt")
    resume: Optional[str] = field(None, "resume state to continue from; 'true'/'latest': the newest under "
                                        "output_path/ckpt")

    # ---- frames: capture (tools/capture_frames.py) and the training images --------------------------------
    data_config_file: str = field("", "yaml whose 'data_config' mapping is the base of data_config",
                                  include="data_config")
    data_config: DataConfig = field(default_factory=DataConfig, help="the videos frames are captured from "
                                                                     "(data_folder, train_data_type, filter_list)")
    frame_folder: str = field("outputs/vae_frames", "PNG frames: written by capture_frames.py, read by training")
    ae_frame_sample_prob: float = field(0.1, "fraction of each video's frames capture_frames.py keeps (seeded)")
    frame_height: int = field(64, "training frame height in pixels (frames are centre-cropped and resized)", minimum=1)
    frame_width: int = field(64, "training frame width in pixels", minimum=1)
    frame_channels: int = field(3, "1 (grayscale, luma) or 3 (RGB): the VAE's in/out channels",
                                choices=CHANNEL_CHOICES)
    val_frames: int = field(64, "frames held out from training for the PSNR and the sample grids", minimum=0)
    num_workers: int = field(2, "threads decoding training frames ahead of the step", minimum=1)

    # ---- the autoencoder (diffusers AutoencoderKL config.json names) ----------------------------------------
    block_out_channels: List[int] = field(default_factory=lambda: [64, 128, 128],
                                          help="width per resolution level; downsampling is 2^(levels-1)")
    layers_per_block: int = field(1, "resnets per encoder level (the decoder has one more)", minimum=1)
    latent_channels: int = field(4, "latent channels", minimum=1)
    norm_num_groups: int = field(32, "GroupNorm groups (must divide every width)", minimum=1)
    mid_block_add_attention: bool = field(True, "self-attention in the lowest-resolution mid block")
    pretrained_vae: str = field("", "start from these VAE weights (.ckpt with the same architecture)")
    posterior_logvar_init: float = field(0.0, "initial posterior log-variance (the logvar half of quant_conv's "
                                              "bias): e.g. -6 starts nearly deterministic, so small runs learn "
                                              "sharp reconstructions sooner; 0 is the usual init")

    # ---- losses ---------------------------------------------------------------------------------------------
    reconstruction_loss: str = field("l1", "pixel loss: l1 or l2 (mean over pixels)", choices=RECONSTRUCTION_LOSSES)
    kl_weight: float = field(5.0e-6, "weight of the KL term (sum over latent elements, mean over frames)", minimum=0.0)
    perceptual_weight: float = field(1.0, "weight of the LPIPS term; needs lpips_checkpoint (else it is off)",
                                     minimum=0.0)
    lpips_checkpoint: str = field("", "LPIPS weights from tools/lpips_converter.py; empty: perceptual term off")
    disc_start: int = field(5000, "optimizer step from which the discriminator trains and the adversarial term "
                                  "is on (a very large value: never)", minimum=0)
    disc_weight: float = field(0.5, "adversarial weight; with disc_adaptive it scales the adaptive weight", minimum=0.0)
    disc_adaptive: bool = field(True, "scale the adversarial term by |grad nll| / |grad adv| at the decoder's "
                                      "last layer (taming-transformers); false: fixed disc_weight")
    disc_layers: int = field(3, "PatchGAN stride-2 layers (receptive field grows with it)", minimum=1)
    disc_channels: int = field(64, "PatchGAN width of the first layer", minimum=1)

    # ---- optimization ---------------------------------------------------------------------------------------
    autoencoder_batch_size: int = field(16, "frames per micro-batch", minimum=1)
    autoencoder_acc_steps: int = field(1, "micro-batches per optimizer step (gradient accumulation)", minimum=1)
    autoencoder_epochs: int = field(20, "passes over the training frames (unless max_steps ends it first)", minimum=1)
    max_steps: Optional[int] = field(None, "stop after this many optimizer steps", minimum=1)
    autoencoder_lr: float = field(1.0e-4, "Adam learning rate of the autoencoder (constant)")
    disc_lr: Optional[float] = field(None, "learning rate of the discriminator (empty: autoencoder_lr)")
    betas: List[float] = field(default_factory=lambda: list(DEFAULT_BETAS), help="Adam beta1, beta2 (both nets)")
    weight_decay: float = field(0.0, "Adam weight decay (L2, as torch.optim.Adam; norms and biases exempt)",
                                minimum=0.0)
    clip_grad: bool = field(False, "clip each network's gradients to max_grad_norm (global norm)")
    max_grad_norm: float = field(1.0, "global gradient norm limit when clip_grad")

    # ---- outputs --------------------------------------------------------------------------------------------
    log_interval: int = field(1, "optimizer steps between metric rows", minimum=1)
    autoencoder_img_save_steps: int = field(200, "optimizer steps between reconstruction grids (and val PSNR)",
                                            minimum=1)
    sample_count: int = field(8, "frames in each reconstruction grid (inputs above reconstructions)", minimum=1)
    ckpt_save_interval: int = field(500, "optimizer steps between checkpoints", minimum=1)
    ckpt_max_keep: int = field(3, "newest checkpoints kept of each kind", minimum=1)

    @property
    def frame_size(self):
        return self.frame_height, self.frame_width

    @property
    def downsample_factor(self):
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def latent_size(self):
        f = self.downsample_factor
        return self.frame_height // f, self.frame_width // f

    def vae_config(self):
        """The AutoencoderKL fields (diffusers names) of this run; the saved sidecar records them."""
        return dict(in_channels=self.frame_channels, out_channels=self.frame_channels,
                    block_out_channels=list(self.block_out_channels), layers_per_block=self.layers_per_block,
                    latent_channels=self.latent_channels, norm_num_groups=self.norm_num_groups,
                    mid_block_add_attention=self.mid_block_add_attention)

    def validate(self):
        if not 0 < self.ae_frame_sample_prob <= 1:
            raise ConfigError(f"ae_frame_sample_prob={self.ae_frame_sample_prob} must be in (0, 1]")
        if not self.block_out_channels:
            raise ConfigError("block_out_channels is empty: give one width per level, e.g. [64, 128, 128]")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ConfigError(f"norm_num_groups={self.norm_num_groups} does not divide block_out_channels {bad}")
        f = self.downsample_factor
        if self.frame_height % f or self.frame_width % f:
            raise ConfigError(f"frame {self.frame_height}x{self.frame_width} must be a multiple of the VAE's "
                              f"downsampling {f} (2^(len(block_out_channels) - 1)) in both sides")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas={self.betas} must be two numbers in [0, 1)")
        for key in ("autoencoder_lr", "disc_lr"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"{key}={value} must be > 0")
        if self.disc_enabled:
            from latte.vae_training.discriminator import patchgan_output_size

            out = patchgan_output_size(self.frame_size, self.disc_layers)
            if min(out) < 1:
                raise ConfigError(f"a {self.disc_layers}-layer PatchGAN has no output for {self.frame_height}x"
                                  f"{self.frame_width} frames: lower disc_layers or raise disc_start to never")

    @property
    def disc_enabled(self):
        """Whether the discriminator can ever train in this run (disc_start within max_steps, if any)."""
        return self.max_steps is None or self.disc_start < self.max_steps
