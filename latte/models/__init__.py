from latte.models.vae import AutoencoderKL, VAE_SCALE_FACTOR, decode_video, encode_video, load_vae
