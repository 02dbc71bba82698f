"""MindSpore cells of latte-ms."""
from latte.models.latte import Latte
from latte.models.registry import LATTE_MODELS, create_latte, model_spec
from latte.models.vae import AutoencoderKL, VAE_SCALE_FACTOR, decode_video, encode_video, load_vae
