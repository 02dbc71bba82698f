"""Training your own KL autoencoder for Latte: frame capture, LPIPS, PatchGAN, compiled steps, trainer.

    python tools/capture_frames.py -c configs/training/vae_moving_digits.yaml   # videos -> PNG frames
    python tools/train_vae.py -c configs/training/vae_moving_digits.yaml        # frames -> vae.ckpt (+ .json)

The result loads with latte.models.vae.load_vae and plugs into train.py / sample.py as vae_checkpoint.
Submodules import MindSpore; import them directly (config, frames, lpips, discriminator, step, trainer).
"""
