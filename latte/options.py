"""Config groups shared by the entry scripts (keys as mindone's Latte users know them)."""
import dataclasses
import functools
import json
import os
from typing import List, Optional

from latte.config import ConfigError, field
from latte.convert.io import meta_path
from latte.data.cache import CACHE_DATA_TYPES
from latte.data.config import DataConfig
from latte.env import DEVICES, DTYPES, JIT_LEVELS
from latte.models.latte import CONDITIONS
from latte.models.registry import model_spec
from latte.training.optim import SCHEDULERS
from latte.training.step import LOSS_SCALERS

VAE_DOWNSAMPLE = 8  # sd-vae-ft-mse: 256x256 frames -> 32x32 latents (used when the VAE has no record)
LATENT_CHANNELS = 4
RGB_CHANNELS = 3
SD_SCALE_FACTOR = 0.18215


def vae_architecture(ckpt_path):
    """The architecture (VAEConfig) of a VAE checkpoint, or None when the file does not exist (yet).

    Read from the `<ckpt>.json` record that tools/vae_converter.py and tools/train_vae.py write next to it (or,
    without one, inferred from the weight shapes as load_vae does); it tells the Latte side the latent
    channels, the downsampling and the frame channels. Cached per file version.
    """
    sidecar = meta_path(ckpt_path)
    path = sidecar if os.path.isfile(sidecar) else ckpt_path
    if not ckpt_path or not os.path.isfile(path):
        return None
    return _read_vae_architecture(os.path.abspath(path), os.path.getmtime(path))


@functools.lru_cache(maxsize=8)
def _read_vae_architecture(path, _mtime):
    from latte.models.vae_config import VAEConfig

    if path.endswith(".json"):
        with open(path) as f:
            fields = json.load(f).get("config")
        if fields is None:
            raise ConfigError(f"{path} has no 'config' (the VAE architecture): convert or train the VAE again")
    else:
        from latte.convert.io import ConversionError, read_ms_checkpoint
        from latte.convert.vae_keys import infer_architecture

        try:
            fields = infer_architecture(read_ms_checkpoint(path)[0])
        except ConversionError:
            return None  # not a VAE checkpoint: load_vae reports it when the VAE is built
        fields["norm_num_groups"] = 1  # weights do not show it and only channels/levels are needed here
    try:
        return VAEConfig.from_dict(fields)
    except ValueError as err:
        raise ConfigError(f"{path}: the VAE architecture it records is not usable ({err})") from None


@dataclasses.dataclass
class ContextOptions:
    device_target: Optional[str] = field(None, "Ascend, GPU or CPU; empty: the first available of these, "
                                               "in that order", choices=(None,) + DEVICES)
    mode: int = field(0, "0: graph mode (compiled, fastest), 1: pynative (eager, for debugging)", choices=(0, 1))
    jit_level: str = field("O1", "MindSpore graph compile level", choices=JIT_LEVELS)
    use_parallel: bool = field(False, "data parallel over the processes of a launcher (msrun, mpirun)")
    seed: int = field(42, "global random seed (numpy, python, MindSpore)")
    max_device_memory: Optional[str] = field(None, "cap on device memory, e.g. '59GB' (Ascend/GPU only)")


# ModelOptions keys that define the diffusion a model was trained with (recorded next to trained checkpoints)
DIFFUSION_KEYS = ("noise_schedule", "predict_xstart", "learn_sigma")


@dataclasses.dataclass
class ModelOptions:
    model_name: str = field("Latte-XL/2", "Latte variant: Latte-{S,B,L,XL}/{2,4,8}, or Latte-T/{1,2,4,8} (tiny)")
    image_size: int = field(256, "frame height = width in pixels (the latent side is image_size / the VAE's "
                                 "downsampling: 8 for sd-vae-ft-mse)")
    num_frames: int = field(16, "frames per video (fixed by the model's temporal table)")
    condition: Optional[str] = field(None, "None (unconditional), 'class' (labels) or 'text'", choices=CONDITIONS)
    num_classes: int = field(1000, "number of classes when condition is 'class' (UCF101: 101)")
    class_dropout_prob: float = field(0.1, "label dropout for classifier-free guidance (> 0 adds the null class)")
    learn_sigma: bool = field(True, "the model also predicts the variance (official: True)")
    noise_schedule: str = field("linear", "beta schedule of the 1000 diffusion steps: 'linear' (official Latte) or "
                                          "'squaredcos_cap_v2' (cosine; better for small pixel-space models)",
                                choices=("linear", "squaredcos_cap_v2"))
    predict_xstart: bool = field(False, "the model predicts the clean video x_0 instead of the noise (official "
                                        "create_diffusion's flag; official Latte: False)")
    patch_embedder: str = field("conv", "'conv' (official) or 'linear' (same weights reshaped; bf16 on Ascend)",
                                choices=("conv", "linear"))
    enable_flash_attention: bool = field(False, "flash attention on Ascend when shapes allow (logged)")
    use_recompute: bool = field(False, "recompute block activations in backward to save memory")
    dtype: Optional[str] = field(None, "Latte compute dtype: fp32, fp16 or bf16 (AMP O2; norms and softmax in "
                                       "fp32). Empty: fp32 on CPU, fp16 on Ascend/GPU", choices=(None,) + DTYPES)
    vae_checkpoint: str = field("models/sd-vae-ft-mse.ckpt", "VAE weights from tools/vae_converter.py or "
                                                             "tools/train_vae.py (latent channels, downsampling and "
                                                             "frame channels come from its .json record); empty: no "
                                                             "VAE, diffusion on pixels (demo)")
    sd_scale_factor: Optional[float] = field(None, "latents are multiplied by this before the diffusion; empty: "
                                                   "the VAE record's scaling_factor (tools/train_vae.py measures "
                                                   "it), else sd-vae-ft-mse's 0.18215")

    def create_diffusion(self, timestep_respacing):
        """The Gaussian diffusion these options describe, respaced ("" keeps all 1000 steps: training)."""
        from latte.diffusion import create_diffusion

        return create_diffusion(timestep_respacing, noise_schedule=self.noise_schedule, learn_sigma=self.learn_sigma,
                                predict_xstart=self.predict_xstart)

    @property
    def pixel_space(self):
        """No VAE: the diffusion runs on RGB pixels (the CPU demo)."""
        return not self.vae_checkpoint

    @property
    def vae_config(self):
        """The VAE's recorded architecture (VAEConfig), or None in pixel space or without a record."""
        return None if self.pixel_space else vae_architecture(self.vae_checkpoint)

    @property
    def downsample(self):
        """Frame pixels per latent pixel: the VAE's record, else sd-vae-ft-mse's 8; 1 in pixel space."""
        if self.pixel_space:
            return 1
        record = self.vae_config
        return VAE_DOWNSAMPLE if record is None else record.downsample_factor

    @property
    def latent_channels(self):
        if self.pixel_space:
            return RGB_CHANNELS
        record = self.vae_config
        return LATENT_CHANNELS if record is None else record.latent_channels

    @property
    def latent_scale(self):
        """Latent multiplier: 1 in pixel space, else sd_scale_factor, or the VAE record's scaling_factor when it is
        not set (0.18215 without a record)."""
        if self.pixel_space:
            return 1.0
        if self.sd_scale_factor is not None:
            return self.sd_scale_factor
        record = self.vae_config
        return SD_SCALE_FACTOR if record is None else record.scaling_factor

    @property
    def frame_channels(self):
        """Channels of the frames the VAE encodes: 1 for a grayscale VAE, else RGB's 3."""
        record = self.vae_config
        return RGB_CHANNELS if record is None else record.in_channels

    @property
    def latent_size(self):
        return self.image_size // self.downsample

    def validate_model(self):
        model_spec(self.model_name)  # raises with the closest valid name
        patch = model_spec(self.model_name)["patch_size"]
        if self.image_size % (self.downsample * patch):
            raise ConfigError(f"image_size={self.image_size} must be a multiple of {self.downsample * patch} "
                              f"(VAE downsampling {self.downsample} x patch {patch} of {self.model_name})")
        if self.num_frames < 1:
            raise ConfigError(f"num_frames={self.num_frames} must be >= 1")
        if self.condition == "class" and self.num_classes < 1:
            raise ConfigError(f"num_classes={self.num_classes} must be >= 1 for condition 'class'")

    def latte_kwargs(self):
        """Keyword arguments of Latte(...) / create_latte(model_name, ...) for these options."""
        return dict(input_size=self.latent_size, in_channels=self.latent_channels, num_frames=self.num_frames,
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
    clip_denoised: Optional[bool] = field(None, "clamp each step's x_0 estimate to [-1, 1]; empty: off with a VAE "
                                                "(as the official sample.py), on in pixel space (data in [-1, 1])")
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
    display_scale: int = field(1, "enlarge written videos and grids this many times (nearest neighbour), "
                                  "for small models such as the 32x32 demo")
    vae_dtype: Optional[str] = field(None, "VAE compute dtype (empty: as dtype)", choices=(None,) + DTYPES)
    vae_micro_batch: int = field(8, "frames decoded at once by the VAE (memory vs speed)")

    @property
    def clip_x0(self):
        return self.pixel_space if self.clip_denoised is None else self.clip_denoised

    def validate(self):
        self.validate_model()
        if not self.checkpoint:
            raise ConfigError("checkpoint is empty: set it to a .ckpt from tools/latte_converter.py or train.py")
        for key in ("sampling_steps", "num_samples", "batch_size", "fps", "trajectory_stride", "vae_micro_batch",
                    "display_scale"):
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


@dataclasses.dataclass
class TrainConfig(ContextOptions, ModelOptions):
    output_path: str = field("outputs/train", "run folder: config, log, metrics, loss curve, ckpt/, samples/")
    data_config_file: str = field("", "yaml whose 'data_config' mapping is the base of data_config",
                                  include="data_config")
    data_config: DataConfig = field(default_factory=DataConfig, help="where and how to read the videos")
    pretrained_model_path: str = field("", "initialize Latte from these weights (.ckpt, converted or trained)")
    resume: Optional[str] = field(None, "resume state to continue from; 'true'/'latest': the newest under "
                                        "output_path/ckpt")
    # schedule
    train_batch_size: int = field(5, "videos per micro-batch (per process)")
    epochs: int = field(3000, "data epochs to train (unless max_steps ends it first)")
    max_steps: Optional[int] = field(None, "stop after this many optimizer steps (checkpoint included)")
    gradient_accumulation_steps: int = field(1, "micro-batches per optimizer step")
    start_learning_rate: float = field(1e-4, "peak learning rate")
    end_learning_rate: float = field(1e-7, "final learning rate of cosine_decay")
    scheduler: str = field("constant", "learning-rate schedule after warm-up", choices=SCHEDULERS)
    warmup_steps: int = field(0, "linear warm-up optimizer steps")
    decay_steps: int = field(0, "cosine decay length in optimizer steps (0: until the end)")
    # optimizer
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999], help="AdamW beta1, beta2")
    optim_eps: float = field(1e-8, "AdamW epsilon (official torch AdamW: 1e-8; mindone configs use 1e-6)")
    weight_decay: float = field(0.0, "AdamW weight decay (norms, biases and fixed tables are exempt)")
    clip_grad: bool = field(False, "clip gradients to max_grad_norm (global norm)")
    max_grad_norm: float = field(1.0, "global gradient norm limit when clip_grad")
    use_ema: bool = field(True, "keep an EMA of the weights (saved as latte-<step>-ema.ckpt)")
    ema_decay: float = field(0.9999, "EMA decay (warm-up: min(decay, (1 + n) / (10 + n)))")
    # precision
    loss_scaler_type: str = field("dynamic", "loss scaling: dynamic, static or none", choices=LOSS_SCALERS)
    init_loss_scale: float = field(65536.0, "initial (or static) loss scale")
    loss_scale_factor: float = field(2.0, "dynamic scale change factor")
    scale_window: int = field(1000, "finite steps before the dynamic scale grows")
    # data feeding and VAE
    dataset_sink_mode: bool = field(False, "feed data by sinking to the device (Ascend/GPU; CPU falls back)")
    sink_size: int = field(-1, "steps per sink (-1: one epoch)")
    vae_micro_batch: int = field(8, "frames the VAE encodes at once inside the train step")
    vae_sample: bool = field(True, "encode with a posterior sample (official) rather than the mean")
    # outputs
    log_interval: int = field(1, "optimizer steps between metric rows / log lines")
    ckpt_save_interval: int = field(1, "save every this many epochs, or steps with step_mode")
    step_mode: bool = field(False, "ckpt_save_interval counts optimizer steps instead of epochs")
    ckpt_max_keep: int = field(3, "newest checkpoints kept of each kind")
    sample_at_checkpoint: bool = field(False, "write sample GIFs with the EMA weights at each checkpoint")
    sample_num_videos: int = field(2, "videos per checkpoint sample")
    sample_steps: int = field(25, "denoising steps of checkpoint samples")
    sample_ddim: bool = field(True, "checkpoint samples use DDIM (False: DDPM ancestral sampling, the official "
                                    "sample.py's method)")
    sample_display_scale: int = field(1, "enlarge checkpoint sample GIFs this many times (nearest neighbour)")

    @property
    def trains_on_cache(self):
        """The data are cached latents (tools/embedding_cache.py): no VAE runs in the train step."""
        return self.data_config.train_data_type in CACHE_DATA_TYPES

    def validate(self):
        self.validate_model()
        for key in ("train_batch_size", "epochs", "gradient_accumulation_steps", "log_interval",
                    "ckpt_save_interval", "ckpt_max_keep", "vae_micro_batch", "sample_num_videos", "sample_steps",
                    "sample_display_scale"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps={self.max_steps} must be >= 1 (or null for no limit)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas={self.betas} must be two numbers in [0, 1)")
        if self.condition == "text":
            raise ConfigError("condition 'text' training needs captions and a text encoder, which latte-ms does "
                              "not have yet: use null or 'class'")
