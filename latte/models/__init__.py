"""MindSpore cells of latte-ms, one module each: latte (the transformer), factory (create_latte), registry
(named variants; plain Python), vae (AutoencoderKL, AutoencoderKLTemporalDecoder, load_vae), vae_temporal (the
temporal decoder's cells), vae_config (their architecture; plain Python), vae_encoder (frames -> latents in
micro-batches of one compiled shape).

Nothing is imported here, so reading the variant registry or a VAE architecture does not import MindSpore.
"""
import importlib

# Public loaders, imported from their modules on first use (PEP 562), so `import latte.models` stays light.
_LAZY = {
    "load_t5": "latte.models.t5",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
