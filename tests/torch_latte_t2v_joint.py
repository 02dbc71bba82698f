"""A torch reference of the official LatteT2V forward with use_image_num = n (Vchitect/Latte models/latte_t2v.py,
training mode), written on diffusers' LatteTransformer3DModel, whose submodules and weights are the official
ones: the same patch embedding, adaLN-single, caption projection, spatial / temporal blocks and output layer.

The official joint branch, step by step:
  captions (B, 1+n, L, caption) -> caption_projection -> the video's caption repeated on its F frames, then each
  image's: (B*(F+n), L, D); the (B, 1+n, L) mask as (1 - mask) * -10000 laid out alike -> (B*(F+n), 1, L);
  adaLN-single's (B, 6D) repeated F + n times for the spatial blocks, T times for the temporal blocks;
  temporal block i on the F video frames only (the images pass), temp_pos_embed added to the video frames before
  the first (the gradient-checkpointed branch; the other one leaves the table out); the output layer's
  embedded timestep repeated F + n times.
"""
import torch


def official_joint_forward(ref, x, t, captions, mask, use_image_num):
    """ref: diffusers.LatteTransformer3DModel (eval); x (B, F+n, C, H, W), t (B,), captions (B, 1+n, L, caption),
    mask (B, 1+n, L) 1/0, torch tensors -> (B, F+n, C', H, W)."""
    b, total, c, h, w = x.shape
    frames = total - use_image_num
    p = ref.config.patch_size
    with torch.no_grad():
        hidden = ref.pos_embed(x.reshape(b * total, c, h, w))  # (B*(F+n), T, D), positions added
        tokens, dim = hidden.shape[1], hidden.shape[2]
        timestep, embedded = ref.adaln_single(t, added_cond_kwargs={"resolution": None, "aspect_ratio": None},
                                              batch_size=b, hidden_dtype=hidden.dtype)  # (B, 6D), (B, D)

        context = ref.caption_projection(captions)  # (B, 1+n, L, D)
        context = torch.cat([context[:, :1].repeat_interleave(frames, dim=1), context[:, 1:]], dim=1)
        context = context.reshape(b * total, context.shape[2], dim)  # (B, F+n, L, D) -> (B*(F+n), L, D)
        bias = (1.0 - mask.float()) * -10000.0  # (B, 1+n, L)
        bias = torch.cat([bias[:, :1].repeat_interleave(frames, dim=1), bias[:, 1:]], dim=1)  # (B, F+n, L)
        bias = bias.reshape(b * total, 1, bias.shape[-1])  # -> (B*(F+n), 1, L)

        t_spatial = timestep.repeat_interleave(total, dim=0)  # (B*(F+n), 6D)
        t_temporal = timestep.repeat_interleave(tokens, dim=0)  # (B*T, 6D)
        for i, (spatial, temporal) in enumerate(zip(ref.transformer_blocks, ref.temporal_transformer_blocks)):
            hidden = spatial(hidden, None, context, bias, t_spatial, None, None)
            hidden = hidden.reshape(b, total, tokens, dim).permute(0, 2, 1, 3)  # (B, T, F+n, D)
            video = hidden[:, :, :frames].reshape(b * tokens, frames, dim)  # (B*T, F, D)
            images = hidden[:, :, frames:].reshape(b * tokens, use_image_num, dim)  # (B*T, n, D)
            if i == 0:
                video = video + ref.temp_pos_embed  # the whole table: the official needs F = video_length
            video = temporal(video, None, None, None, t_temporal, None, None)
            hidden = torch.cat([video, images], dim=1).reshape(b, tokens, total, dim)  # (B, T, F+n, D)
            hidden = hidden.permute(0, 2, 1, 3).reshape(b * total, tokens, dim)  # (B*(F+n), T, D)

        embedded = embedded.repeat_interleave(total, dim=0)  # (B*(F+n), D)
        shift, scale = (ref.scale_shift_table[None] + embedded[:, None]).chunk(2, dim=1)
        hidden = ref.proj_out(ref.norm_out(hidden) * (1 + scale) + shift)  # (B*(F+n), T, p*p*C')
        gh, gw = h // p, w // p
        hidden = hidden.reshape(-1, gh, gw, p, p, ref.out_channels)
        out = torch.einsum("nhwpqc->nchpwq", hidden).reshape(b, total, ref.out_channels, h, w)
    return out
