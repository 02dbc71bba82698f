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


def spatial_table(embed_dim, grid_size, base_size=None, interpolation_scale=1.0):
    """(grid_h * grid_w, embed_dim) table for a patch grid (grid_size: int or (h, w)), tokens row-major over (h, w).

    As in the official code (meshgrid(grid_w, grid_h)), the FIRST half of each row encodes the column
    (w) index and the second half the row (h) index. Positions are index / (grid / base_size) / interpolation_scale
    in float32 (diffusers' PatchEmbed, get_2d_sincos_pos_embed); base_size None is the grid itself, i.e. plain
    indices (the official Latte).
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim={embed_dim} must be even for a 2-D sin-cos table")
    grid_h, grid_w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    pos_h, pos_w = (_grid_positions(g, base_size, interpolation_scale) for g in (grid_h, grid_w))
    rows, cols = np.meshgrid(pos_h, pos_w, indexing="ij")  # (h, w) each
    col_half = sincos_1d(embed_dim // 2, cols)  # (h*w, D/2)
    row_half = sincos_1d(embed_dim // 2, rows)  # (h*w, D/2)
    return np.concatenate([col_half, row_half], axis=1)


def _grid_positions(grid, base_size, interpolation_scale):
    positions = np.arange(grid, dtype=np.float32)
    if base_size is None:
        return positions
    return positions / np.float32(grid / base_size) / np.float32(interpolation_scale)
