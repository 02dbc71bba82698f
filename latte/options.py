"""Config groups shared by the entry scripts (keys as mindone's Latte users know them)."""
import dataclasses
from typing import List, Optional

from latte.config import ConfigError, field
from latte.env import DEVICES, DTYPES, JIT_LEVELS
from latte.models.latte import CONDITIONS
from latte.models.registry import model_spec

VAE_DOWNSAMPLE = 8  # sd-vae-ft-mse: 256x256 frames -> 32x32 latents
LATENT_CHANNELS = 4
SD_SCALE_FACTOR = 0.18215


@dataclasses.dataclass
class ContextOptions:
    device_target: Optional[str] = field(None, "Ascend, GPU or CPU; empty: the first available of these, "
                                               "in that order", choices=(None,) + DEVICES)
    mode: int = field(0, "0: graph mode (compiled, fastest), 1: pynative (eager, for debugging)", choices=(0, 1))
    jit_level: str = field("O1", "MindSpore graph compile level", choices=JIT_LEVELS)
    use_parallel: bool = field(False, "data parallel over the processes of a launcher (msrun, mpirun)")
    seed: int = field(42, "global random seed (numpy, python, MindSpore)")
    max_device_memory: Optional[str] = field(None, "cap on device memory, e.g. '59GB' (Ascend/GPU only)")


@dataclasses.dataclass
class ModelOptions:
    model_name: str = field("Latte-XL/2", "Latte variant: Latte-{S,B,L,XL}/{2,4,8}, or Latte-T/{1,2,4,8} (tiny)")
    image_size: int = field(256, "frame height = width in pixels (the latent side is image_size / 8)")
    num_frames: int = field(16, "frames per video (fixed by the model's temporal table)")
    condition: Optional[str] = field(None, "None (unconditional), 'class' (labels) or 'text'", choices=CONDITIONS)
    num_classes: int = field(1000, "number of classes when condition is 'class' (UCF101: 101)")
    class_dropout_prob: float = field(0.1, "label dropout for classifier-free guidance (> 0 adds the null class)")
    learn_sigma: bool = field(True, "the model also predicts the variance (official: True)")
    patch_embedder: str = field("conv", "'conv' (official) or 'linear' (same weights reshaped; bf16 on Ascend)",
                                choices=("conv", "linear"))
    enable_flash_attention: bool = field(False, "flash attention on Ascend when shapes allow (logged)")
    use_recompute: bool = field(False, "recompute block activations in backward to save memory")
    dtype: Optional[str] = field(None, "Latte compute dtype: fp32, fp16 or bf16 (AMP O2; norms and softmax in "
                                       "fp32). Empty: fp32 on CPU, fp16 on Ascend/GPU", choices=(None,) + DTYPES)
    vae_checkpoint: str = field("models/sd-vae-ft-mse.ckpt", "VAE weights from tools/vae_converter.py")
    sd_scale_factor: float = field(SD_SCALE_FACTOR, "latent scale factor of the Stable Diffusion VAE")

    @property
    def latent_size(self):
        return self.image_size // VAE_DOWNSAMPLE

    def validate_model(self):
        model_spec(self.model_name)  # raises with the closest valid name
        patch = model_spec(self.model_name)["patch_size"]
        if self.image_size % (VAE_DOWNSAMPLE * patch):
            raise ConfigError(f"image_size={self.image_size} must be a multiple of {VAE_DOWNSAMPLE * patch} "
                              f"(VAE downsampling {VAE_DOWNSAMPLE} x patch {patch} of {self.model_name})")
        if self.num_frames < 1:
            raise ConfigError(f"num_frames={self.num_frames} must be >= 1")
        if self.condition == "class" and self.num_classes < 1:
            raise ConfigError(f"num_classes={self.num_classes} must be >= 1 for condition 'class'")

    def latte_kwargs(self):
        """Keyword arguments of Latte(...) / create_latte(model_name, ...) for these options."""
        return dict(input_size=self.latent_size, in_channels=LATENT_CHANNELS, num_frames=self.num_frames,
                    condition=self.condition, num_classes=self.num_classes,
                    class_dropout_prob=self.class_dropout_prob, learn_sigma=self.learn_sigma,
                    patch_embedder=self.patch_embedder, enable_flash_attention=self.enable_flash_attention,
                    use_recompute=self.use_recompute)


@dataclasses.dataclass
class SampleConfig(ContextOptions, ModelOptions):
    checkpoint: str = field("", "Latte weights (.ckpt from tools/latte_converter.py or from train.py)")
    sampling_steps: int = field(250, "denoising steps (the timestep respacing, as the official sample.py)")
    ddim_sampling: bool = field(False, "DDIM instead of DDPM ancestral sampling")
    ddim_eta: float = field(0.0, "DDIM eta (0: deterministic)")
    guidance_scale: float = field(1.0, "classifier-free guidance scale; > 1 needs condition 'class'")
    class_labels: List[int] = field(default_factory=list, help="labels to sample (class models), cycled over "
                                                                "num_samples; empty: random labels")
    num_samples: int = field(1, "videos to generate")
    batch_size: int = field(1, "videos denoised together")
    output_path: str = field("samples", "a timestamped folder is created under it")
    fps: int = field(8, "frames per second of the written videos")
    save_format: str = field("gif", "gif, mp4 or both", choices=("gif", "mp4", "both"))
    save_trajectory: bool = field(False, "also write the denoising trajectory (x_0 estimates at every step)")
    trajectory_stride: int = field(10, "keep every n-th step in trajectory videos")
    save_grid: bool = field(True, "write a PNG grid of the first frames")
    vae_dtype: Optional[str] = field(None, "VAE compute dtype (empty: as dtype)", choices=(None,) + DTYPES)
    vae_micro_batch: int = field(8, "frames decoded at once by the VAE (memory vs speed)")

    def validate(self):
        self.validate_model()
        if not self.checkpoint:
            raise ConfigError("checkpoint is empty: set it to a .ckpt from tools/latte_converter.py or train.py")
        for key in ("sampling_steps", "num_samples", "batch_size", "fps", "trajectory_stride", "vae_micro_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)} must be >= 1")
        if self.guidance_scale > 1 and self.condition != "class":
            raise ConfigError(f"guidance_scale={self.guidance_scale} needs a class-conditional model "
                              f"(condition is {self.condition!r}); use guidance_scale: 1.0")
        if self.guidance_scale > 1 and self.class_dropout_prob <= 0:
            raise ConfigError("guidance_scale > 1 needs the null class (class_dropout_prob > 0 at training)")
        bad = [y for y in self.class_labels if not 0 <= y < self.num_classes]
        if bad:
            raise ConfigError(f"class_labels {bad} out of range [0, {self.num_classes - 1}] "
                              f"(num_classes={self.num_classes})")
