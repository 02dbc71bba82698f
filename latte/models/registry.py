"""Named Latte variants (as the official Latte_models), plus a tiny one for tests and demos, and the
conditioning modes. Plain Python: config checks read it without importing MindSpore (create_latte builds one:
latte/models/factory.py)."""
import difflib

CONDITIONS = (None, "class", "text")  # unconditional, class labels, text embeddings

# size name -> (depth, hidden_size, num_heads)
_SIZES = {
    "XL": (28, 1152, 16),
    "L": (24, 1024, 16),
    "B": (12, 768, 12),
    "S": (12, 384, 6),
    "T": (4, 64, 4),  # tiny: tests and the CPU demo, not in the official registry
}
_PATCHES = (1, 2, 4, 8)
_OFFICIAL_PATCHES = (2, 4, 8)

LATTE_MODELS = {
    f"Latte-{size}/{patch}": dict(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=patch)
    for size, (depth, hidden, heads) in _SIZES.items()
    for patch in (_PATCHES if size == "T" else _OFFICIAL_PATCHES)
}


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
