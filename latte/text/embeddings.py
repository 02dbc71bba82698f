"""Text embeddings files: T5 states of prompts computed once (tools/text_embeddings.py), so that sampling needs no
text encoder (T5-XXL is 19 GB in fp32). Plain numpy: config checks read the stored texts without MindSpore.

    save_text_embeddings("prompts.npz", texts, states, mask, text_encoder="models/t5-v1_1-xxl.ckpt")
    stored = TextEmbeddings("prompts.npz")
    states, mask = stored(["a cat wearing sunglasses", ""])   # as latte.text_to_video.encode_texts returns them

The file (.npz, uncompressed, no pickled objects):

    format        ()           str    EMBEDDINGS_FORMAT
    texts         (N,)         str    the texts as given (prompts and negative prompts, before lower-casing)
    states        (N, 120, D)  float  T5 last hidden states at all 120 token positions: padding included, since
                                      a negative prompt is cut to its prompt's length, which may reach into its
                                      padding (LattePipeline's mask_feature)
    mask          (N, 120)     int32  1 on the tokens and </s>, 0 on padding
    text_encoder  ()           str    the T5 checkpoint that computed them (information only)
"""
import os

import numpy as np

EMBEDDINGS_FORMAT = "latte-ms text embeddings 1"
WRITER = "tools/text_embeddings.py"


def save_text_embeddings(path, texts, states, mask, text_encoder=""):
    """Writes the file (atomically); each text once."""
    texts = [str(t) for t in texts]
    if len(set(texts)) != len(texts):
        raise ValueError("save_text_embeddings: the texts repeat; store each text once")
    states, mask = np.asarray(states), np.asarray(mask)
    if states.ndim != 3 or states.shape[:2] != mask.shape or states.shape[0] != len(texts):
        raise ValueError(f"states {states.shape}, mask {mask.shape} and {len(texts)} texts do not match: expected "
                         "(N, L, D), (N, L) and N texts")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(tmp, format=np.array(EMBEDDINGS_FORMAT), texts=np.array(texts, dtype=np.str_), states=states,
             mask=mask.astype(np.int32), text_encoder=np.array(str(text_encoder)))
    os.replace(tmp, path)
    return path


class TextEmbeddings:
    """A text embeddings file: texts -> (states (N, 120, D) float32, mask (N, 120) int32), the text side of
    latte.text_to_video.encode_texts. The texts are read at once, the states on first use."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"text_embeddings {path!r} not found: write it with {WRITER}")
        self.path = path
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data.files or str(data["format"]) != EMBEDDINGS_FORMAT:
                raise ValueError(f"{path} is not a text embeddings file ({EMBEDDINGS_FORMAT!r}): write it with "
                                 f"{WRITER}")
            self.texts = [str(t) for t in data["texts"]]
            self.text_encoder = str(data["text_encoder"])
        self.index = {text: i for i, text in enumerate(self.texts)}
        self._states = self._mask = None

    def missing(self, texts):
        """The texts the file does not hold, in order."""
        return [t for t in texts if t not in self.index]

    def _load(self):
        if self._states is None:
            with np.load(self.path, allow_pickle=False) as data:
                self._states, self._mask = data["states"].astype(np.float32), data["mask"].astype(np.int32)

    @property
    def width(self):
        """D, the T5 width of the stored states."""
        self._load()
        return self._states.shape[-1]

    def __call__(self, texts):
        absent = self.missing(texts)
        if absent:
            raise KeyError(f"{self.path} holds no embeddings for {absent[0]!r} ({len(absent)} text(s) missing): "
                           f"add them with {WRITER}, or sample with the text_encoder")
        self._load()
        rows = [self.index[t] for t in texts]
        return self._states[rows], self._mask[rows]
