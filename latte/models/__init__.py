"""MindSpore cells of latte-ms, one module each: latte (the transformer), latte_t2v (LatteT2V, Latte-1's
text-to-video transformer), factory (create_latte), loader (load_latte: any recorded Latte checkpoint), registry
(named variants; plain Python), t2v_config (LatteT2V's architecture; plain Python), t5 / t5_config (the T5 text
encoder, load_t5), vae (AutoencoderKL, AutoencoderKLTemporalDecoder, load_vae), vae_temporal (the temporal
decoder's cells), vae_config (their architecture; plain Python), vae_encoder (frames -> latents in micro-batches
of one compiled shape).

Nothing is imported here, so reading the variant registry or a VAE architecture does not import MindSpore; the
public loaders are imported on first use (PEP 562): `from latte.models import load_latte, load_t5`.
"""
import importlib

# Public loaders and the modules that hold them, imported on first use so `import latte.models` stays light.
_LAZY = {
    "load_latte": "latte.models.loader",
    "load_t5": "latte.models.t5",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
