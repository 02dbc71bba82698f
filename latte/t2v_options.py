"""The configs of text-to-video (LatteT2V, Latte-1) sampling: plain Python, as latte/options.py.

    PromptOptions            prompts, the negative prompt, and the T5 text encoder that reads them
    TextToVideoSampleConfig  sample.py on a LatteT2V checkpoint (converted Latte-1, or trained by train.py)
    TextEmbeddingsConfig     tools/text_embeddings.py
    sample_config_class      which config sample.py parses (the checkpoint's record decides)
The text encoder's keys (TextEncoderOptions, and train.py's CaptionOptions) are in latte/text/options.py.
"""
import dataclasses
import os
import sys
from typing import List, Optional

from latte.checkpoint_io import CheckpointError, read_meta
from latte.config import ConfigError, field, given_keys
from latte.env import DTYPES
from latte.models.registry import KIND_T2V
from latte.options import DeviceOptions, GraphCacheOptions, SampleConfig, VAEOptions, checkpoint_record
from latte.text.options import TextEncoderOptions


@dataclasses.dataclass
class PromptOptions(TextEncoderOptions):
    """Prompts, and the T5 text encoder and tokenizer that turn them into embeddings."""
    prompt: List[str] = field(default_factory=list, split=False,
                              help="prompts (a yaml list; on the command line one prompt, commas included)")
    prompts_file: str = field("", "a text file of prompts, one per line (blank lines skipped); they follow "
                                  "`prompt`'s")
    negative_prompt: str = field("", "the negative prompt of classifier-free guidance (Latte-1: empty)")

    def prompts(self):
        """`prompt`, then the lines of prompts_file (stripped, blank lines skipped)."""
        listed = list(self.prompt)
        if self.prompts_file:
            with open(self.prompts_file, encoding="utf-8") as f:
                listed += [line.strip() for line in f if line.strip()]
        return listed

    def validate_prompts(self):
        if self.prompts_file and not os.path.isfile(self.prompts_file):
            raise ConfigError(f"prompts_file {self.prompts_file!r} not found: give a text file of prompts, one per "
                              "line")
        if not self.prompts():
            raise ConfigError("no prompts: give --prompt \"a cat wearing sunglasses\", a `prompt` list in the yaml, "
                              "or a prompts_file")


T2V_SAVE_FORMATS = ("gif", "mp4", "both", "frames")  # frames: <run>/videos/<sample>/<frame>.png


@dataclasses.dataclass
class TextToVideoSampleConfig(DeviceOptions, VAEOptions, PromptOptions, GraphCacheOptions):
    """sample.py on a LatteT2V checkpoint: LattePipeline's sampling (the official sample/sample_t2x.py)."""
    checkpoint: str = field("", "LatteT2V weights (.ckpt from tools/latte_converter.py on Latte-1's transformer/)")
    vae_checkpoint: str = field("", "VAE .ckpt from tools/vae_converter.py: Latte-1's vae_temporal_decoder/ "
                                    "(official default) or vae/; latent scale from its record (0.18215). Empty: "
                                    "pixel space, for a LatteT2V trained on frames in [-1, 1] (in_channels 3: the "
                                    "demo)")
    text_embeddings: str = field("", "an .npz of T5 states from tools/text_embeddings.py: replaces text_encoder "
                                     "(T5 is then not loaded); every prompt and the negative prompt must be in it")
    scheduler: str = field("ddim", "ddim, ddpm, euler, euler_ancestral or dpmsolver++ (also the official "
                                   "sample_method names DDIM, DDPM, EulerDiscrete, EulerAncestralDiscrete, "
                                   "DPMSolverMultistep)")
    scheduler_config: str = field("", "a diffusers scheduler_config.json (or its folder, or the pipeline folder) "
                                      "every scheduler is built from; empty: Latte-1's DDIM config")
    sampling_steps: int = field(50, "denoising steps", minimum=1)
    guidance_scale: float = field(7.5, "classifier-free guidance scale (<= 1: no guidance, half the compute)")
    ddim_eta: float = field(0.0, "DDIM eta (0: deterministic; scheduler ddim only)", minimum=0.0)
    video_length: int = field(16, "frames per video (at most the model's video_length, 16 for Latte-1); 1 writes "
                                  "PNG images (text-to-image)", minimum=1)
    image_size: List[int] = field(default_factory=lambda: [512, 512],
                                  help="frame size in pixels: [height, width] or one number for squares")
    enable_temporal_attentions: bool = field(True, "run the temporal blocks (Latte-1: True)")
    mask_feature: bool = field(True, "LattePipeline's mask_feature: one prompt's T5 states cut to its tokens")
    decode_chunk_size: int = field(0, "0: the VAE decodes whole videos; N: LattePipeline's N-frame chunks of the "
                                      "flat frame sequence (14 reproduces its videos exactly)", minimum=0)
    num_samples_per_prompt: int = field(1, "videos per prompt (each from its own noise)", minimum=1)
    enable_flash_attention: bool = field(False, "flash attention on Ascend when shapes allow (logged)")
    output_path: str = field("samples/t2v", "a timestamped folder is created under it")
    fps: int = field(8, "frames per second of the written videos", minimum=1)
    save_format: str = field("mp4", "gif, mp4, both or frames (video_length 1 writes PNG)", choices=T2V_SAVE_FORMATS)
    display_scale: int = field(1, "enlarge written videos this many times (nearest neighbour), for small "
                                  "pixel-space models such as the 16x16 demo", minimum=1)
    dtype: Optional[str] = field(None, "LatteT2V and T5 compute dtype: fp32, fp16 or bf16 (norms and softmax in "
                                       "fp32). Empty: fp32 on CPU, fp16 on Ascend/GPU", choices=(None,) + DTYPES)
    vae_dtype: Optional[str] = field(None, "VAE compute dtype (empty: as dtype)", choices=(None,) + DTYPES)

    @classmethod
    def fill_defaults(cls, given):
        """A LatteT2V trained by train.py: its record supplies the keys not given (the VAE, the text encoder and
        tokenizer, the image size, the frame count); a train.py resume state stands for the weights saved with
        it. A converted Latte-1 has no such record: everything comes from the keys given."""
        if not given.get("checkpoint"):
            return given
        given, recorded = checkpoint_record(given, trained_sample_keys)
        return {**recorded, **given}

    def scheduler_overrides(self):
        """For a LatteT2V trained by train.py, the scheduler config keys its diffusion implies (beta schedule,
        prediction type) over Latte-1's DDIM config; {} with a scheduler_config or a converted checkpoint."""
        diffusion = read_meta(self.checkpoint).get("diffusion")
        if self.scheduler_config or not diffusion:
            return {}
        return {"beta_schedule": diffusion["noise_schedule"],
                "prediction_type": "sample" if diffusion["predict_xstart"] else "epsilon"}

    @property
    def frame_size(self):
        """(height, width) in pixels."""
        return (self.image_size[0], self.image_size[-1])

    @property
    def latent_hw(self):
        """(h, w) of the latents."""
        return tuple(side // self.downsample for side in self.frame_size)

    def transformer_config(self):
        """The LatteT2V's config.json fields from the checkpoint's record ({} without a record)."""
        return read_meta(self.checkpoint).get("config", {})

    def validate(self):
        if not self.checkpoint:
            raise ConfigError("checkpoint is empty: set it to a .ckpt from tools/latte_converter.py on Latte-1's "
                              "transformer/")
        if not os.path.isfile(self.checkpoint):
            raise ConfigError(f"checkpoint {self.checkpoint!r} not found: convert Latte-1's transformer/ with "
                              "tools/latte_converter.py")
        kind = read_meta(self.checkpoint).get("kind")
        if kind not in (None, KIND_T2V):
            raise ConfigError(f"checkpoint {self.checkpoint} holds a {kind!r} model, not a LatteT2V: sample it with "
                              "the class / unconditional keys")
        self.validate_prompts()
        if self.text_embeddings:
            self._validate_text_embeddings()
        else:
            self.validate_text_encoder("encode the prompts (or give text_embeddings from tools/text_embeddings.py)")
        if self.ddim_eta > 0 and self.scheduler not in ("ddim", "DDIM"):
            raise ConfigError(f"ddim_eta={self.ddim_eta} is an option of scheduler ddim, not {self.scheduler!r}: "
                              "remove it or use scheduler ddim")
        self._validate_sizes()

    def _validate_text_embeddings(self):
        from latte.text.embeddings import TextEmbeddings

        try:
            stored = TextEmbeddings(self.text_embeddings)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(str(err)) from None
        needed = self.prompts() + ([self.negative_prompt] if self.guidance_scale > 1 else [])
        absent = stored.missing(needed)
        if absent:
            raise ConfigError(f"text_embeddings {self.text_embeddings} holds no embeddings for {absent[0]!r} "
                              f"({len(absent)} of {len(set(needed))} texts missing): add them with "
                              "tools/text_embeddings.py, or give text_encoder and tokenizer instead")

    def _validate_sizes(self):
        if len(self.image_size) not in (1, 2):
            raise ConfigError(f"image_size={self.image_size}: give [height, width] or one number")
        model = self.transformer_config()
        patch = int(model.get("patch_size") or 1)
        step = self.downsample * patch
        if any(side % step for side in self.frame_size):
            raise ConfigError(f"image_size={self.image_size} must be multiples of {step} (VAE downsampling "
                              f"{self.downsample} x patch {patch})")
        frames = model.get("video_length")
        if frames is not None and self.video_length > frames:
            raise ConfigError(f"video_length={self.video_length} but {self.checkpoint} has a temporal table of "
                              f"{frames} frames: use video_length <= {frames}")
        channels = model.get("in_channels")
        if channels is not None and channels != self.latent_channels and self.pixel_space:
            raise ConfigError(f"vae_checkpoint is empty (pixel space: {self.latent_channels} channels) but "
                              f"{self.checkpoint} takes {channels}-channel latents: give the .ckpt of "
                              "tools/vae_converter.py on its pipeline's vae_temporal_decoder/ (or vae/)")
        if channels is not None and channels != self.latent_channels:
            raise ConfigError(f"{self.vae_checkpoint} has {self.latent_channels} latent channels but "
                              f"{self.checkpoint} takes {channels}: give the VAE of the same pipeline")


def trained_sample_keys(meta):
    """The TextToVideoSampleConfig keys a train.py record of a LatteT2V supplies ({} for other records)."""
    if meta.get("kind") != KIND_T2V or "image_size" not in meta:
        return {}
    keys = {"image_size": [meta["image_size"]] * 2, "video_length": meta.get("config", {}).get("video_length"),
            "vae_checkpoint": "" if meta.get("pixel_space") else meta.get("vae_checkpoint"),
            "sd_scale_factor": meta.get("sd_scale_factor"), "text_encoder": meta.get("text_encoder"),
            "tokenizer": meta.get("tokenizer")}
    return {k: v for k, v in keys.items() if v not in (None, "")}


@dataclasses.dataclass
class TextEmbeddingsConfig(DeviceOptions, PromptOptions):
    """tools/text_embeddings.py: the T5 states of prompts (and the negative prompt) into a text embeddings file."""
    output: str = field("", "the .npz to write; an existing one keeps its texts and gains the new ones")
    dtype: Optional[str] = field(None, "T5 compute dtype: fp32, fp16 or bf16. Empty: fp32 on CPU, fp16 on "
                                       "Ascend/GPU", choices=(None,) + DTYPES)

    def validate(self):
        if not self.output.endswith(".npz"):
            raise ConfigError(f"output={self.output!r}: give the .npz file to write")
        self.validate_prompts()
        self.validate_text_encoder()


# keys only text-to-video sampling reads: given for another checkpoint, they say the checkpoint is the wrong one
# (the prompt keys first: an error names the key a user most likely gave)
T2V_ONLY_KEYS = tuple(sorted((f.name for f in dataclasses.fields(TextToVideoSampleConfig)
                              if f.name not in {g.name for g in dataclasses.fields(SampleConfig)}),
                             key=lambda name: name not in ("prompt", "prompts_file")))


def sample_config_class(argv=None):
    """The config sample.py parses: TextToVideoSampleConfig when the checkpoint's record says kind latte_t2v
    (tools/latte_converter.py on Latte-1), else SampleConfig (class-conditional / unconditional Latte)."""
    given = given_keys(argv)
    checkpoint = given.get("checkpoint") or ""
    try:
        kind = read_meta(checkpoint).get("kind") if checkpoint else None
    except CheckpointError as err:
        raise ConfigError(str(err)) from None
    if kind == KIND_T2V:
        return TextToVideoSampleConfig
    t2v_keys = [k for k in T2V_ONLY_KEYS if k in given]  # prompt first
    if not t2v_keys:
        return SampleConfig
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):  # the keys' help, before converting
        return TextToVideoSampleConfig
    why = ("it is empty" if not checkpoint else "no such file" if not os.path.isfile(checkpoint)
           else f"its record says kind={kind!r}" if kind else "it has no .json record")
    raise ConfigError(f"{t2v_keys[0]!r} is a text-to-video key but checkpoint {checkpoint!r} is not a LatteT2V "
                      f"({why}): give the .ckpt of tools/latte_converter.py on Latte-1's transformer/")
