"""MindSpore cells of latte-ms."""
from latte.models.latte import Latte
from latte.models.registry import LATTE_MODELS, create_latte, model_spec
from latte.models.vae import VAE_SCALE_FACTOR, AutoencoderKL, decode_video, encode_video, load_vae

__all__ = ["AutoencoderKL", "LATTE_MODELS", "Latte", "VAE_SCALE_FACTOR", "create_latte", "decode_video",
           "encode_video", "load_vae", "model_spec"]
