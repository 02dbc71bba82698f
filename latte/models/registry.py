"""Named Latte variants (as the official Latte_models), plus a tiny one for tests and demos, and the
conditioning modes; and the text-to-video (LatteT2V) variants. Plain Python: config checks read it without
importing MindSpore (create_latte builds one: latte/models/factory.py; load_latte builds any recorded one)."""
import difflib

CONDITIONS = (None, "class", "text")  # unconditional, class labels, text embeddings

# size name -> (depth, hidden_size, num_heads)
_SIZES = {
    "XL": (28, 1152, 16),
    "L": (24, 1024, 16),
    "B": (12, 768, 12),
    "S": (12, 384, 6),
    "T": (4, 64, 4),  # tiny: tests, not in the official registry
    "T128": (4, 128, 4),  # Latte-T twice as wide: the CPU demo before 2026-12-01, not official
    "T128D6": (6, 128, 4),  # Latte-T128 with 6 blocks: the CPU demo (configs/training/demo.yaml), not official
}
_PATCHES = (1, 2, 4, 8)
_OFFICIAL_PATCHES = (2, 4, 8)


def _is_tiny(size):
    """The Latte-T* sizes: ours, with every patch size; the official ones take 2, 4 and 8."""
    return size.startswith("T")


LATTE_MODELS = {
    f"Latte-{size}/{patch}": dict(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=patch)
    for size, (depth, hidden, heads) in _SIZES.items()
    for patch in (_PATCHES if _is_tiny(size) else _OFFICIAL_PATCHES)
}


def describe_variants():
    """The class / unconditional variants for help texts, e.g. 'Latte-{XL,L,B,S}/{2,4,8}, Latte-T/{1,2,4,8}'."""
    def braces(items):
        return "{" + ",".join(str(item) for item in items) + "}"

    official = [size for size in _SIZES if not _is_tiny(size)]
    return ", ".join([f"Latte-{braces(official)}/{braces(_OFFICIAL_PATCHES)}"]
                     + [f"Latte-{size}/{braces(_PATCHES)}" for size in _SIZES if _is_tiny(size)])


def model_spec(model_name):
    """Architecture kwargs of a named variant; unknown names raise with the closest valid one."""
    if model_name not in LATTE_MODELS:
        by_lower = {name.lower(): name for name in LATTE_MODELS}
        close = difflib.get_close_matches(str(model_name).lower(), by_lower, n=1)
        hint = f"; did you mean {by_lower[close[0]]!r}?" if close else ""
        raise ValueError(f"model_name={model_name!r} is not a Latte variant{hint} "
                         f"(known: {', '.join(LATTE_MODELS)})")
    return dict(LATTE_MODELS[model_name])


def find_variant(depth, hidden_size, patch_size):
    """Name of the registered variant with this shape, or None (num_heads is not visible in a state dict)."""
    for name, spec in LATTE_MODELS.items():
        if (spec["depth"], spec["hidden_size"], spec["patch_size"]) == (depth, hidden_size, patch_size):
            return name
    return None


# The "kind" a Latte checkpoint's record (.ckpt.json) names: the class / unconditional Latte, or LatteT2V.
KIND_CLASS, KIND_T2V = "latte", "latte_t2v"
KINDS = (KIND_CLASS, KIND_T2V)

# Text-to-video: LatteT2V (diffusers' LatteTransformer3DModel) variants as config.json fields (T2VConfig).
T2V_MODELS = {
    # maxin-cn/Latte-1 transformer/config.json (video_length is diffusers' default; 512x512 px, 16 frames)
    "Latte-1": dict(in_channels=4, out_channels=8, num_layers=28, num_attention_heads=16, attention_head_dim=72,
                    cross_attention_dim=1152, caption_channels=4096, sample_size=64, patch_size=2,
                    norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
                    activation_fn="gelu-approximate", attention_bias=True, num_embeds_ada_norm=1000, dropout=0.0,
                    video_length=16),
    # tiny, Latte-1's layout: tests and CPU demos
    "Latte-1-T": dict(in_channels=4, out_channels=8, num_layers=2, num_attention_heads=2, attention_head_dim=8,
                      cross_attention_dim=16, caption_channels=24, sample_size=8, patch_size=2,
                      norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
                      activation_fn="gelu-approximate", attention_bias=True, num_embeds_ada_norm=1000, dropout=0.0,
                      video_length=4),
    # the text-to-video demo (configs/training/demo_t2v.yaml): 16x16 RGB frames (pixel space, no VAE), 8 frames,
    # the built-in 'demo' T5 (32 wide); 2 spatial + 2 temporal blocks of 64 channels, as Latte-T/2
    "Latte-1-demo": dict(in_channels=3, out_channels=3, num_layers=2, num_attention_heads=4, attention_head_dim=16,
                         cross_attention_dim=64, caption_channels=32, sample_size=16, patch_size=2,
                         norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
                         activation_fn="gelu-approximate", attention_bias=True, num_embeds_ada_norm=1000,
                         dropout=0.0, video_length=8),
}
# what the weights of a LatteT2V show (num_attention_heads and sample_size do not show)
T2V_SHAPE_FIELDS = ("in_channels", "out_channels", "num_layers", "patch_size", "caption_channels", "attention_bias")


def t2v_spec(model_name):
    """config.json fields of a named LatteT2V variant; unknown names raise with the known ones."""
    if model_name not in T2V_MODELS:
        raise ValueError(f"model_name={model_name!r} is not a LatteT2V variant (known: {', '.join(T2V_MODELS)})")
    return dict(T2V_MODELS[model_name])


def find_t2v_variant(inner_dim, **shape_fields):
    """Name of the LatteT2V variant with this token width and these T2V_SHAPE_FIELDS values, or None."""
    for name, spec in T2V_MODELS.items():
        if spec["num_attention_heads"] * spec["attention_head_dim"] == inner_dim and all(
                spec[k] == v for k, v in shape_fields.items()):
            return name
    return None
