"""Fixed sin-cos position tables (MAE recipe), computed in float64 numpy like the official Latte.

Each table row is [sin | cos] over `embed_dim / 2` frequencies 1 / 10000^(2i / embed_dim).
"""
import numpy as np

MAX_PERIOD = 10000.0


def sincos_1d(embed_dim, positions):
    """(M,) positions -> (M, embed_dim) float64 table, each row [sin(pos * omega) | cos(pos * omega)]."""
    if embed_dim % 2:
        raise ValueError(f"embed_dim={embed_dim} must be even for a sin-cos table")
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / MAX_PERIOD**omega  # (D/2,)
    angles = np.einsum("m,d->md", np.asarray(positions, dtype=np.float64).reshape(-1), omega)  # (M, D/2)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def temporal_table(embed_dim, num_frames):
    """(num_frames, embed_dim) table over frame index 0..F-1."""
    return sincos_1d(embed_dim, np.arange(num_frames))


def spatial_table(embed_dim, grid_size):
    """(grid_size**2, embed_dim) table for a square patch grid, tokens row-major over (h, w).

    As in the official code (meshgrid(grid_w, grid_h)), the FIRST half of each row encodes the column
    (w) index and the second half the row (h) index.
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim={embed_dim} must be even for a 2-D sin-cos table")
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")  # (G, G) each
    col_half = sincos_1d(embed_dim // 2, cols)  # (G*G, D/2)
    row_half = sincos_1d(embed_dim // 2, rows)  # (G*G, D/2)
    return np.concatenate([col_half, row_half], axis=1)
