"""MindSpore cells of latte-ms, one module each: latte (the transformer), factory (create_latte), registry
(named variants; plain Python), vae (AutoencoderKL, AutoencoderKLTemporalDecoder, load_vae), vae_temporal (the
temporal decoder's cells), vae_config (their architecture; plain Python), vae_encoder (frames -> latents in
micro-batches of one compiled shape).

Nothing is imported here, so reading the variant registry or a VAE architecture does not import MindSpore.
"""
