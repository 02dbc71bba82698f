"""MindSpore cells of latte-ms, one module each: latte (the transformer), latte_t2v (LatteT2V, Latte-1's
text-to-video transformer), factory (create_latte), loader (load_latte: any recorded Latte checkpoint), registry
(named variants; plain Python), t2v_config (LatteT2V's architecture; plain Python), vae (AutoencoderKL, load_vae),
vae_config (its architecture; plain Python), vae_encoder (frames -> latents in micro-batches of one compiled shape).

Nothing is imported here, so reading the variant registry or a VAE architecture does not import MindSpore; the
public loaders are imported on first use (PEP 562): `from latte.models import load_latte`.
"""


def __getattr__(name):
    if name == "load_latte":
        from latte.models.loader import load_latte

        return load_latte
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
