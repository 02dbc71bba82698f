"""Training data: video files, frame folders or synthetic moving shapes -> mindspore.dataset of clips.

    from latte.data import DataConfig, create_video_dataset
    dataset, info = create_video_dataset(DataConfig(data_folder="sky_train", train_data_type="frame_folder"),
                                         image_size=256, num_frames=16, batch_size=4, seed=0)
    for batch in dataset.create_dict_iterator(num_epochs=1, output_numpy=True):
        batch["video"]  # float32 (4, 16, 3, 256, 256) in [-1, 1]
    batches = iterate_batches(dataset)  # tuples, epoch after epoch, for a step-counted loop

Latent caches (tools/embedding_cache.py) are the types "numpy" and "mindrecord": `create_cache_dataset`.
"""
from latte.data.config import CACHE_DATA_TYPES, DataConfig
from latte.data.dataset import ClipSource, DatasetInfo, create_video_dataset, iterate_batches
from latte.data.errors import DataError
from latte.data.index import VideoIndex, build_video_index
from latte.data.sources import SOURCE_TYPES, SourceType
from latte.data.synthetic import synthetic_video, write_synthetic_dataset
from latte.data.cache_dataset import create_cache_dataset  # registers the cache types in SOURCE_TYPES

__all__ = [
    "DataConfig", "DataError", "create_video_dataset", "iterate_batches", "DatasetInfo", "ClipSource",
    "build_video_index", "VideoIndex", "SOURCE_TYPES", "SourceType", "synthetic_video", "write_synthetic_dataset",
    "CACHE_DATA_TYPES", "create_cache_dataset",
]
