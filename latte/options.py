"""The configs of the commands (keys as mindone's Latte users know them): each holds only the keys its command
reads. Plain Python: parsing a config or --help does not import MindSpore.

    DeviceOptions      device, mode, jit level, seed, device memory (every command)
    ContextOptions     + data parallel (train.py, tools/embedding_cache.py)
    VAEOptions         the frozen VAE: its checkpoint and latent scale, and what its record says
    ModelOptions       + the Latte variant and its diffusion (train.py, sample.py)
    SampleConfig, TrainConfig, EmbeddingCacheConfig: the configs of sample.py, train.py, tools/embedding_cache.py
TrainConfig trains a class / unconditional Latte or, with condition 'text' and a LatteT2V model_name (Latte-1),
text-to-video (its caption keys: latte/text/options.py). The text-to-video sampling configs (PromptOptions,
TextToVideoSampleConfig, TextEmbeddingsConfig, sample_config_class) are in latte/t2v_options.py.
"""
import dataclasses
import os
from typing import List, Optional

from latte.checkpoint_io import CheckpointError, read_meta, weights_beside_state
from latte.config import ConfigError, field
from latte.data.cache import SAVE_DTYPES
from latte.data.config import CACHE_DATA_TYPES, DataConfig
from latte.env import DEVICES, DTYPES, JIT_LEVELS
from latte.io import RGB_CHANNELS
from latte.metrics.recipes import I3D_MIN_FRAMES
from latte.models.registry import CONDITIONS, T2V_MODELS, describe_variants, model_spec, t2v_spec
from latte.models.vae_config import VAEConfig, read_vae_architecture
from latte.text.options import CaptionEncoderOptions, CaptionOptions

SD_VAE = VAEConfig()  # sd-vae-ft-mse: what a VAE checkpoint without a record is taken to be
LOSS_SCALERS = ("dynamic", "static", "none")  # loss_scaler_type choices (latte.training.step)
SCHEDULERS = ("constant", "cosine_decay")  # scheduler choices (latte.training.optim)


@dataclasses.dataclass
class DeviceOptions:
    device_target: Optional[str] = field(None, "Ascend, GPU or CPU; empty: the first available of these, "
                                               "in that order", choices=(None,) + DEVICES)
    mode: int = field(0, "0: graph mode (compiled, fastest), 1: pynative (eager, for debugging)", choices=(0, 1))
    jit_level: str = field("O1", "MindSpore graph compile level", choices=JIT_LEVELS)
    seed: int = field(42, "global random seed (numpy, python, MindSpore)")
    max_device_memory: Optional[str] = field(None, "cap on device memory, e.g. '59GB' (Ascend/GPU only)")


class MindoneKeys:
    """Configs that read mindone's Latte yaml files as they are (latte.mindone_keys)."""

    @classmethod
    def translate_keys(cls, data, where):
        from latte.mindone_keys import translate_mindone_keys

        return translate_mindone_keys(data, where)


@dataclasses.dataclass
class GraphCacheOptions:
    graph_cache: bool = field(True, "graph mode: save the compiled graphs under output_path/.graph_cache and reuse "
                                    "them in a later run with the same settings and code (a resume, a repeated "
                                    "sample.py: seconds instead of a ~35 s compile)")


@dataclasses.dataclass
class ContextOptions(DeviceOptions):
    use_parallel: bool = field(False, "data parallel over the processes of a launcher (msrun, mpirun)")


@dataclasses.dataclass
class VAEOptions:
    """The frozen VAE between frames and latents; what its record says, read by explicit calls."""
    vae_checkpoint: str = field("models/sd-vae-ft-mse.ckpt", "VAE weights from tools/vae_converter.py or "
                                                             "tools/train_vae.py (latent channels, downsampling and "
                                                             "frame channels come from its .json record); empty: no "
                                                             "VAE, diffusion on pixels (demo)")
    sd_scale_factor: Optional[float] = field(None, "latents are multiplied by this before the diffusion; empty: "
                                                   "the VAE record's scaling_factor (tools/train_vae.py measures "
                                                   "it), else sd-vae-ft-mse's 0.18215")

    @property
    def pixel_space(self):
        """No VAE: the diffusion runs on RGB pixels (the CPU demo)."""
        return not self.vae_checkpoint

    def vae_architecture(self):
        """The VAE's architecture as its record (or weights) say; sd-vae-ft-mse's when the file does not exist
        yet; None in pixel space. Reads the record (cached per file version)."""
        if self.pixel_space:
            return None
        return read_vae_architecture(self.vae_checkpoint) or SD_VAE

    @property
    def downsample(self):
        """Frame pixels per latent pixel (8 for sd-vae-ft-mse); 1 in pixel space."""
        return 1 if self.pixel_space else self.vae_architecture().downsample_factor

    @property
    def latent_channels(self):
        return RGB_CHANNELS if self.pixel_space else self.vae_architecture().latent_channels

    @property
    def latent_scale(self):
        """Latent multiplier: 1 in pixel space, else sd_scale_factor, or the VAE record's scaling_factor when it is
        not set (0.18215 without a record)."""
        if self.pixel_space:
            return 1.0
        if self.sd_scale_factor is not None:
            return self.sd_scale_factor
        return self.vae_architecture().scaling_factor

    @property
    def frame_channels(self):
        """Channels of the frames the VAE encodes: 1 for a grayscale VAE, else RGB's 3."""
        return RGB_CHANNELS if self.pixel_space else self.vae_architecture().in_channels


# ModelOptions keys that define the diffusion a model was trained with (recorded next to trained checkpoints)
DIFFUSION_KEYS = ("noise_schedule", "predict_xstart", "learn_sigma")


@dataclasses.dataclass
class ModelOptions(VAEOptions):
    model_name: str = field("Latte-XL/2", f"Latte variant: {describe_variants()} (the Latte-T* are tiny, "
                                          "not official: tests and the demo); with condition 'text' a LatteT2V: "
                                          f"{', '.join(T2V_MODELS)}")
    image_size: int = field(256, "frame height = width in pixels (the latent side is image_size / the VAE's "
                                 "downsampling: 8 for sd-vae-ft-mse)", minimum=1)
    num_frames: int = field(16, "frames per video (fixed by the model's temporal table)", minimum=1)
    condition: Optional[str] = field(None, "None (unconditional), 'class' (labels) or 'text' (captions through T5: "
                                           "a LatteT2V model_name)", choices=CONDITIONS)
    num_classes: int = field(1000, "number of classes when condition is 'class' (UCF101: 101)", minimum=1)
    class_dropout_prob: float = field(0.1, "label dropout for classifier-free guidance (> 0 adds the null class)",
                                      minimum=0.0)
    learn_sigma: bool = field(True, "the model also predicts the variance (official: True)")
    noise_schedule: str = field("linear", "beta schedule of the 1000 diffusion steps: 'linear' (official Latte) or "
                                          "'squaredcos_cap_v2' (cosine; better for small pixel-space models)",
                                choices=("linear", "squaredcos_cap_v2"))
    predict_xstart: bool = field(False, "the model predicts the clean video x_0 instead of the noise (official "
                                        "create_diffusion's flag; official Latte: False)")
    patch_embedder: str = field("conv", "'conv' (official) or 'linear' (same weights reshaped; bf16 on Ascend)",
                                choices=("conv", "linear"))
    enable_flash_attention: bool = field(False, "flash attention on Ascend when shapes allow (logged)")
    dtype: Optional[str] = field(None, "Latte compute dtype: fp32, fp16 or bf16 (AMP O2; norms and softmax in "
                                       "fp32). Empty: fp32 on CPU, fp16 on Ascend/GPU", choices=(None,) + DTYPES)

    def create_diffusion(self, timestep_respacing):
        """The Gaussian diffusion these options describe, respaced ("" keeps all 1000 steps: training)."""
        from latte.diffusion import create_diffusion

        return create_diffusion(timestep_respacing, noise_schedule=self.noise_schedule, learn_sigma=self.learn_sigma,
                                predict_xstart=self.predict_xstart)

    @property
    def latent_size(self):
        return self.image_size // self.downsample

    @property
    def is_text_model(self):
        """condition 'text': the model is a LatteT2V (T2V_MODELS)."""
        return self.condition == "text"

    def validate_model(self):
        if self.is_text_model and self.model_name not in T2V_MODELS:
            raise ConfigError(f"model_name={self.model_name!r} takes no captions: with condition 'text' use a "
                              f"LatteT2V ({', '.join(T2V_MODELS)})")
        if not self.is_text_model and self.model_name in T2V_MODELS:
            raise ConfigError(f"model_name={self.model_name!r} is a text-to-video LatteT2V: set condition: text "
                              "(or choose a Latte-{S,B,L,XL}/N variant)")
        try:
            patch = (t2v_spec if self.is_text_model else model_spec)(self.model_name)["patch_size"]
        except ValueError as err:  # names the closest valid variant
            raise ConfigError(str(err)) from None
        if self.image_size % (self.downsample * patch):
            raise ConfigError(f"image_size={self.image_size} must be a multiple of {self.downsample * patch} "
                              f"(VAE downsampling {self.downsample} x patch {patch} of {self.model_name})")
        if self.is_text_model and self.patch_embedder != "conv":
            raise ConfigError(f"patch_embedder={self.patch_embedder!r}: a LatteT2V has the conv patch embedder "
                              "only; remove the key")

    def t2v_config(self, caption_channels):
        """The T2VConfig fields (config.json) of a LatteT2V for these options: the registry's architecture, with
        the latent channels in (twice that out when the variance is learned, as Latte-1), the latent side as
        sample_size, num_frames as video_length, and the text encoder's width as caption_channels."""
        channels = self.latent_channels
        return dict(t2v_spec(self.model_name), in_channels=channels,
                    out_channels=2 * channels if self.learn_sigma else channels, sample_size=self.latent_size,
                    video_length=self.num_frames, caption_channels=int(caption_channels))

    def latte_kwargs(self):
        """Keyword arguments of Latte(...) / create_latte(model_name, ...) for these options."""
        return dict(input_size=self.latent_size, in_channels=self.latent_channels, num_frames=self.num_frames,
                    condition=self.condition, num_classes=self.num_classes,
                    class_dropout_prob=self.class_dropout_prob, learn_sigma=self.learn_sigma,
                    patch_embedder=self.patch_embedder, enable_flash_attention=self.enable_flash_attention)


# the ModelOptions that build a trained model, as train.py records them next to its weights
RECORDED_MODEL_KEYS = ("model_name", "image_size", "num_frames", "condition", "num_classes", "class_dropout_prob",
                       "patch_embedder", "vae_checkpoint", "sd_scale_factor") + DIFFUSION_KEYS
_LATTE_CONFIG_KEYS = ("num_frames", "condition", "num_classes", "class_dropout_prob", "patch_embedder")


def recorded_model_keys(meta):
    """The RECORDED_MODEL_KEYS of a train.py weights record (the `<ckpt>.json` sidecar); {} for other records
    (a converted official checkpoint's record does not know the image size or the diffusion)."""
    if "image_size" not in meta or "diffusion" not in meta:
        return {}
    config = meta.get("config", {})
    keys = dict(model_name=meta.get("model_name"), image_size=meta["image_size"],
                vae_checkpoint="" if meta.get("pixel_space") else meta.get("vae_checkpoint", ""))
    keys.update({k: config[k] for k in _LATTE_CONFIG_KEYS if k in config})
    keys.update({k: v for k, v in meta["diffusion"].items() if k in DIFFUSION_KEYS})
    if meta.get("sd_scale_factor") is not None:  # the latent multiplier the model was trained with, if set
        keys["sd_scale_factor"] = meta["sd_scale_factor"]
    return keys


def checkpoint_record(given, keys_of):
    """(given with `checkpoint` the weights file, keys_of(its record)): a train.py resume state stands for the
    weights saved with it. For the configs' fill_defaults."""
    path = given["checkpoint"]
    weights, ema = weights_beside_state(path)
    if ema is not None:
        if weights is None:
            raise ConfigError(f"checkpoint {path} is a train.py resume state, and the weights saved with it "
                              f"({ema}) are gone: give a latte-<step>-ema.ckpt of that run")
        given = dict(given, checkpoint=weights)
    try:
        return given, keys_of(read_meta(given["checkpoint"]))
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


def _contradicts(key, given, recorded):
    if key == "vae_checkpoint":  # the VAE file may have moved; only pixel space vs latents changes the model
        return bool(given) != bool(recorded)
    return given != recorded


@dataclasses.dataclass
class SampleConfig(DeviceOptions, ModelOptions, GraphCacheOptions, MindoneKeys):
    checkpoint: str = field("", "Latte weights (.ckpt from tools/latte_converter.py or from train.py)")
    sampling_steps: int = field(250, "denoising steps (the timestep respacing, as the official sample.py)", minimum=1)
    ddim_sampling: bool = field(False, "DDIM instead of DDPM ancestral sampling")
    ddim_eta: float = field(0.0, "DDIM eta (0: deterministic)", minimum=0.0)
    resample_rounds: int = field(1, "times each denoising step is taken: every further round noises the sample back "
                                    "one step and denoises it again (RePaint's resampling); 1: the official "
                                    "sampler; n: n times the model calls", minimum=1)
    guidance_scale: float = field(1.0, "classifier-free guidance scale; > 1 needs condition 'class'")
    clip_denoised: Optional[bool] = field(None, "clamp each step's x_0 estimate to [-1, 1]; empty: off with a VAE "
                                                "(as the official sample.py), on in pixel space (data in [-1, 1])")
    class_labels: List[int] = field(default_factory=list, help="labels to sample (class models), cycled over "
                                                                "num_samples; empty: random labels")
    num_samples: int = field(1, "videos to generate", minimum=1)
    batch_size: int = field(1, "videos denoised together", minimum=1)
    output_path: str = field("samples", "a timestamped folder is created under it")
    fps: int = field(8, "frames per second of the written videos", minimum=1)
    save_format: str = field("gif", "gif, mp4, both, or frames: <run>/videos/<sample>/<frame>.png, the folder "
                                    "tools/eval_metrics.py reads", choices=("gif", "mp4", "both", "frames"))
    save_trajectory: bool = field(False, "also write the denoising trajectory (x_0 estimates at every step)")
    trajectory_stride: int = field(10, "keep every n-th step in trajectory videos", minimum=1)
    save_grid: bool = field(True, "write a PNG grid of the first frames")
    display_scale: int = field(1, "enlarge written videos and grids this many times (nearest neighbour), "
                                  "for small models such as the 32x32 demo", minimum=1)
    vae_dtype: Optional[str] = field(None, "VAE compute dtype (empty: as dtype)", choices=(None,) + DTYPES)
    vae_micro_batch: int = field(8, "frames decoded at once by the VAE (memory vs speed)", minimum=1)

    @property
    def clip_x0(self):
        return self.pixel_space if self.clip_denoised is None else self.clip_denoised

    @classmethod
    def fill_defaults(cls, given):
        """The checkpoint's record supplies every model key not given (as nanoGPT restores model_args); a given
        key that contradicts it is an error. A train.py resume state is replaced by the weights saved with it."""
        if not given.get("checkpoint"):
            return given
        given, recorded = checkpoint_record(given, recorded_model_keys)
        wrong = [f"{k}={given[k]!r} but the checkpoint has {k}={recorded[k]!r}" for k in recorded
                 if k in given and _contradicts(k, given[k], recorded[k])]
        if wrong:
            raise ConfigError(f"checkpoint {given['checkpoint']} was trained with other settings: {'; '.join(wrong)}"
                              " (leave these keys out to use the trained values)")
        return {**recorded, **given}

    def validate(self):
        if not self.checkpoint:
            raise ConfigError("checkpoint is empty: set it to a .ckpt from tools/latte_converter.py or train.py")
        if self.condition == "text":
            raise ConfigError(f"condition 'text' needs a LatteT2V checkpoint, but {self.checkpoint} has no latte_t2v "
                              "record: give a latte-<step>-ema.ckpt of a text-to-video train.py run, or the .ckpt "
                              "of tools/latte_converter.py on Latte-1's transformer/")
        self.validate_model()
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
class DataOptions:
    data_config_file: str = field("", "yaml whose 'data_config' mapping is the base of data_config",
                                  include="data_config")
    data_config: DataConfig = field(default_factory=DataConfig, help="where and how to read the videos")


@dataclasses.dataclass
class TrainConfig(ContextOptions, ModelOptions, DataOptions, CaptionOptions, GraphCacheOptions, MindoneKeys):
    output_path: str = field("outputs/train", "run folder: config, log, metrics, loss curve, ckpt/, samples/")
    pretrained_model_path: str = field("", "initialize Latte from these weights (.ckpt, converted or trained)")
    resume: Optional[str] = field(None, "resume state to continue from; 'true'/'latest': the newest under "
                                        "output_path/ckpt")
    use_recompute: bool = field(False, "recompute block activations in backward to save memory")
    # schedule
    train_batch_size: int = field(5, "videos per micro-batch (per process)", minimum=1)
    epochs: int = field(3000, "data epochs to train (unless max_steps ends it first)", minimum=1)
    max_steps: Optional[int] = field(None, "stop after this many optimizer steps (checkpoint included); empty: no "
                                           "limit", minimum=1)
    gradient_accumulation_steps: int = field(1, "micro-batches per optimizer step", minimum=1)
    start_learning_rate: float = field(1e-4, "peak learning rate")
    end_learning_rate: float = field(1e-7, "final learning rate of cosine_decay")
    scheduler: str = field("constant", "learning-rate schedule after warm-up", choices=SCHEDULERS)
    warmup_steps: int = field(0, "linear warm-up optimizer steps", minimum=0)
    decay_steps: int = field(0, "cosine decay length in optimizer steps (0: until the end)", minimum=0)
    timestep_power: float = field(1.0, "training timesteps t = floor(1000 * u ** (1 / p)), u uniform: 1 is the "
                                       "official uniform draw; p > 1 draws noisy timesteps more often (density "
                                       "grows as t ** (p - 1)), where a video's layout and motion are decided",
                                  minimum=1.0)
    # optimizer
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999], help="AdamW beta1, beta2")
    optim_eps: float = field(1e-8, "AdamW epsilon (official torch AdamW: 1e-8; mindone configs use 1e-6)")
    weight_decay: float = field(0.0, "AdamW weight decay (norms, biases and fixed tables are exempt)", minimum=0.0)
    clip_grad: bool = field(False, "clip gradients to max_grad_norm (global norm)")
    max_grad_norm: float = field(1.0, "global gradient norm limit when clip_grad")
    use_ema: bool = field(True, "keep an EMA of the weights (saved as latte-<step>-ema.ckpt)")
    ema_decay: float = field(0.9999, "EMA decay (official: 0.9999)")
    ema_warmup: str = field("none", "how the EMA decay reaches ema_decay after n updates: none (official: from the "
                                    "first step), num_updates (min(decay, (1 + n) / (10 + n))), mindone "
                                    "(decay * (1 - exp(-n / 2000)))", choices=("none", "num_updates", "mindone"))
    # precision
    loss_scaler_type: str = field("dynamic", "loss scaling: dynamic, static or none", choices=LOSS_SCALERS)
    init_loss_scale: float = field(65536.0, "initial (or static) loss scale")
    loss_scale_factor: float = field(2.0, "dynamic scale change factor")
    scale_window: int = field(1000, "finite steps before the dynamic scale grows", minimum=1)
    # data feeding and VAE
    dataset_sink_mode: bool = field(False, "feed data by sinking to the device (Ascend/GPU; CPU falls back)")
    sink_size: int = field(-1, "steps per sink (-1: one epoch)")
    vae_micro_batch: int = field(8, "frames the VAE encodes at once inside the train step", minimum=1)
    vae_sample: bool = field(True, "encode with a posterior sample (official) rather than the mean")
    # outputs
    log_interval: int = field(1, "optimizer steps between metric rows / log lines", minimum=1)
    ckpt_save_interval: int = field(1, "save every this many epochs, or steps with step_mode", minimum=1)
    step_mode: bool = field(False, "ckpt_save_interval counts optimizer steps instead of epochs")
    ckpt_max_keep: int = field(3, "newest checkpoints kept of each kind", minimum=1)
    sample_at_checkpoint: bool = field(False, "write sample GIFs with the EMA weights at each checkpoint")
    sample_num_videos: int = field(2, "videos per checkpoint sample", minimum=1)
    sample_steps: int = field(25, "denoising steps of checkpoint samples", minimum=1)
    sample_ddim: bool = field(True, "checkpoint samples use DDIM (False: DDPM ancestral sampling, the official "
                                    "sample.py's method)")
    sample_resample_rounds: int = field(1, "resample_rounds of checkpoint samples (sample.py's key)", minimum=1)
    sample_display_scale: int = field(1, "enlarge checkpoint sample GIFs this many times (nearest neighbour)",
                                      minimum=1)
    fvd_at_checkpoint: bool = field(False, "compute a small FVD at each checkpoint: fvd_num_videos videos generated "
                                           "with the EMA weights (sample_steps, sample_ddim, sample_resample_rounds) "
                                           "against one clip of each held-out video in fvd_real_data_path; a column "
                                           "of metrics.csv")
    fvd_i3d_checkpoint: str = field("", "the FVD's I3D, converted from the released i3d_torchscript.pt by "
                                        "tools/metrics_converter.py --detector i3d")
    fvd_real_data_path: str = field("", "folder of held-out real videos (.mp4/.gif at any depth, or one folder of "
                                        "frame images per video), read as tools/eval_metrics.py reads them; their "
                                        "features are computed once and cached under output_path/fvd")
    fvd_num_videos: int = field(16, "videos generated for each checkpoint's FVD", minimum=2)
    fvd_batch_size: int = field(4, "videos denoised together, and clips per I3D call, for the FVD", minimum=1)
    fvd_real_subsample: Optional[int] = field(None, "held-out clips take every n-th frame (num_frames of them); "
                                                    "empty: data_config.sample_stride, the training clips' stride",
                                              minimum=1)

    @property
    def trains_on_cache(self):
        """The data are cached latents (tools/embedding_cache.py): no VAE runs in the train step."""
        return self.data_config.train_data_type in CACHE_DATA_TYPES

    def latte_kwargs(self):
        return dict(super().latte_kwargs(), use_recompute=self.use_recompute)

    @property
    def use_image_num(self):
        """Images after each clip (image-video joint training; data_config), a resume setting."""
        return self.data_config.use_image_num

    @property
    def needs_text_encoder(self):
        """T5 is loaded: to encode the captions in the step (videos), or the empty caption once (dropout)."""
        return self.is_text_model and (not self.trains_on_cache or self.caption_dropout_prob > 0)

    def validate(self):
        self.validate_model()
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas={self.betas} must be two numbers in [0, 1)")
        if self.is_text_model:
            self._validate_text()
        elif self.caption_keys_given():
            raise ConfigError(f"{self.caption_keys_given()[0]} is a key of condition 'text' (captions), but condition "
                              f"is {self.condition!r}: remove it, or set condition: text with a LatteT2V model_name")
        if self.fvd_at_checkpoint:
            self._validate_fvd()

    @property
    def fvd_subsample(self):
        """Every how many frames of a held-out video its FVD clip takes."""
        return self.fvd_real_subsample or self.data_config.sample_stride

    def _validate_fvd(self):
        convert = ("convert the released i3d_torchscript.pt with python tools/metrics_converter.py --detector i3d "
                   "--source i3d_torchscript.pt --target models/i3d.ckpt and set fvd_i3d_checkpoint to it (or set "
                   "fvd_at_checkpoint: false)")
        if not self.fvd_i3d_checkpoint:
            raise ConfigError(f"fvd_at_checkpoint needs fvd_i3d_checkpoint, which is empty: {convert}")
        if not os.path.isfile(self.fvd_i3d_checkpoint):
            raise ConfigError(f"fvd_i3d_checkpoint {self.fvd_i3d_checkpoint} not found: {convert}")
        if not self.fvd_real_data_path or not os.path.isdir(self.fvd_real_data_path):
            raise ConfigError(f"fvd_real_data_path {self.fvd_real_data_path!r} is not a folder: give the folder of "
                              "held-out real videos (.mp4/.gif, or a folder of frame images per video) the FVD "
                              "compares with")
        if self.num_frames < I3D_MIN_FRAMES:
            raise ConfigError(f"num_frames={self.num_frames}: the FVD's I3D needs clips of at least {I3D_MIN_FRAMES} "
                              "frames; set fvd_at_checkpoint: false (or train with num_frames >= "
                              f"{I3D_MIN_FRAMES})")

    def _validate_text(self):
        if not 0 <= self.caption_dropout_prob < 1:
            raise ConfigError(f"caption_dropout_prob={self.caption_dropout_prob}: expected 0 <= p < 1 (Latte-1: 0.1)")
        if self.needs_text_encoder:
            why = ("encode the captions in the train step" if not self.trains_on_cache else
                   f"encode the empty caption of caption_dropout_prob={self.caption_dropout_prob} (or set it to 0)")
            self.validate_text_encoder(why)
        unsupported = [(key, why) for key, on, why in (
            ("use_recompute", self.use_recompute, "LatteT2V has no recomputed blocks yet"),
            ("sample_at_checkpoint", self.sample_at_checkpoint, "checkpoint samples are for class / "
                                                                "unconditional models; sample with sample.py --prompt"),
            ("fvd_at_checkpoint", self.fvd_at_checkpoint, "the checkpoint FVD samples class / unconditional "
                                                          "models; write videos with sample.py --save_format frames "
                                                          "and run tools/eval_metrics.py"),
        ) if on]
        if unsupported:
            key, why = unsupported[0]
            raise ConfigError(f"{key}: true with condition 'text': {why}; set it to false")


@dataclasses.dataclass
class EmbeddingCacheConfig(CaptionEncoderOptions, ContextOptions, VAEOptions, DataOptions):
    """What tools/embedding_cache.py reads: the videos (data keys), how they are framed (image_size, condition),
    the VAE and its scale, the text encoder of the captions (condition text), and how the cache is written."""
    image_size: int = field(256, "frame height = width in pixels the videos are cropped and resized to (as "
                                 "training reads them)", minimum=1)
    condition: Optional[str] = field(None, "'class': record each video's class label (from "
                                           "data_config.class_from); 'text': store the T5 states and mask of "
                                           "each video's caption (data_config.caption_file or .txt beside it; "
                                           "needs text_encoder and tokenizer); null: neither",
                                     choices=(None, "class", "text"))
    text_batch_size: int = field(8, "condition text: captions T5 encodes per call (the last call is padded so "
                                    "one graph serves all)", minimum=1)
    cache_folder: str = field("", "folder of the cache (created; an existing cache of the same settings is "
                                  "continued, one of other settings is an error)")
    cache_file_type: str = field("numpy", "numpy (one memory-mappable .npy per video) or mindrecord (chunks of "
                                          "videos, one row per segment of frames)", choices=CACHE_DATA_TYPES)
    save_data_type: str = field("float32", "stored dtype of the latents (float16 halves the cache)",
                                choices=SAVE_DTYPES)
    sample_latents: bool = field(False, "store a posterior sample (mean + std * noise, noise seeded by (seed, video)) "
                                        "instead of the posterior mean")
    frames_per_batch: int = field(8, "frames the VAE encodes per call (memory vs speed); the last batch of a "
                                     "video is padded so one graph serves all", minimum=1)
    vae_dtype: str = field("fp32", "VAE compute dtype (GroupNorm stays fp32)", choices=DTYPES)
    resume_cache_index: int = field(0, "skip videos before this index of the listing (the index a stopped run "
                                       "printed); cached videos are never rewritten anyway", minimum=0)
    max_videos: Optional[int] = field(None, "stop after this many videos were attempted in this run (null: all)",
                                      minimum=1)
    rank: Optional[int] = field(None, "this process caches the videos whose index modulo world_size is rank "
                                      "(null: 0, or the launcher's rank with use_parallel)")
    world_size: Optional[int] = field(None, "number of processes sharing the videos (null: 1, or the launcher's "
                                            "with use_parallel)")
    segment_frames: int = field(16, "mindrecord: latent frames per row (one row must fit max_page_size)", minimum=1)
    videos_per_file: int = field(64, "mindrecord: videos per file; each file is committed whole (a stopped run "
                                     "loses at most the open one)", minimum=1)
    max_page_size: int = field(32, "mindrecord: page size in MiB (1..256); checked against the row size", minimum=1)

    @classmethod
    def translate_keys(cls, data, where):
        """A training config (mindone's documented `--config configs/training/x.yaml`) is read for its data, VAE
        and text keys: train.py's other keys are dropped, said in one line; mindone's names are translated."""
        import logging

        from latte.mindone_keys import translate_mindone_keys

        data = translate_mindone_keys(data, where)
        ours = {f.name for f in dataclasses.fields(cls)}
        training = [k for k in data if k not in ours and k in {f.name for f in dataclasses.fields(TrainConfig)}]
        if training:
            logging.getLogger(__name__).warning("%s: training keys not read by the cache tool: %s", where,
                                                ", ".join(training))
        return {k: v for k, v in data.items() if k not in training}

    def validate(self):
        if not self.cache_folder:
            raise ConfigError("cache_folder is empty: give the folder to write the cache to")
        if self.pixel_space:
            raise ConfigError("vae_checkpoint is empty: the cache stores VAE latents; set vae_checkpoint to a "
                              ".ckpt from tools/vae_converter.py")
        if self.data_config.train_data_type in CACHE_DATA_TYPES:
            raise ConfigError(f"data_config.train_data_type={self.data_config.train_data_type!r} is already a "
                              "cache: give the data config of the videos (video_file, frame_folder or synthetic)")
        if (self.rank is None) != (self.world_size is None):
            raise ConfigError("give both rank and world_size, or neither")
        if self.world_size is not None and not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank={self.rank} with world_size={self.world_size}: expected 0 <= rank < world_size")
        if self.world_size is not None and self.use_parallel:
            raise ConfigError("use_parallel takes rank and world_size from the launcher: do not also set them")
        self.check_text_keys(self.condition)
