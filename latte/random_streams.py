"""Every seeded random stream of latte-ms, in one table.

A stream is a numpy generator seeded `np.random.default_rng([seed, Stream.X, *position])`: the run's seed, the
stream's id, then what the draw belongs to (an epoch, a video, a global sample index). Two streams never share
an id, so no two kinds of draw can ever read the same numbers (the training noise of sample g once equalled
the shuffle of epoch g: both were seeded [seed, 0, g]). `enum.unique` refuses a duplicate id at import.
Plain Python (no MindSpore): the data pipeline, the trainers and the tools all read it.
"""
import enum


@enum.unique
class Stream(enum.IntEnum):
    # the video data pipeline (latte.data.dataset)
    DATA_SHUFFLE = 0  # [seed, id, epoch]: the epoch's video order
    DATA_CLIP = 1  # [seed, id, epoch, video]: clip start and flip
    DATA_SUBSTITUTE = 2  # [seed, id, epoch, position]: the stand-in for an unreadable video
    DATA_JOINT_IMAGES = 5  # [seed, id, epoch, position, image, attempt]: joint training's images (joint_images)
    # the embedding cache (latte.data.cache_builder)
    CACHE_POSTERIOR = 3  # [seed, id, video]: posterior samples of the cached latents
    # Latte training (latte.training.loss.StepNoise)
    TRAIN_STEP = 4  # [seed, id, global sample]: timestep, diffusion noise, VAE posterior noise, label dropout
    TRAIN_IMAGE_DROP = 6  # [seed, id, global sample]: joint training's image label dropout (training.joint)
    # the text-to-video scheduler loop (latte.diffusion.scheduler_loop)
    SCHEDULER_NOISE = 20  # [seed, id, *position]: per-step noise of DDPM / Euler ancestral / DDIM with eta > 0
    # text-to-video sampling (latte.t2v_sampling)
    T2V_LATENTS = 21  # [seed, id, prompt, sample]: the starting noise of each video
    # autoencoder training (latte.vae_training.frames)
    VAE_CAPTURE = 10  # [seed, id, crc32(video name)]: which frames are captured
    VAE_SPLIT = 11  # [seed, id]: the held-out frames
    VAE_ORDER = 12  # [seed, id, epoch]: the epoch's frame order
    VAE_NOISE = 13  # [seed, id, global frame]: posterior noise of the training step
