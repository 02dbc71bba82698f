"""The architecture of a T5 text encoder, spelled with transformers' T5Config field names, and named variants.

Importing this module needs neither MindSpore nor torch (converters and config checks read it cheaply).

    config = T5_ENCODERS["t5-v1_1-xxl"]              # Latte-1's text_encoder (google/t5-v1_1-xxl's encoder)
    config = T5EncoderConfig.from_hf_config(fields)  # the dict in a transformers config.json
    T5EncoderConfig.from_dict(config.to_dict())      # the .ckpt.json sidecar round trip
"""
import dataclasses
from dataclasses import dataclass

# feed_forward_proj values the cells implement: T5 v1.1 (Latte-1, PixArt) and the original T5 v1.0.
GATED_GELU = "gated-gelu"  # wo(gelu_new(wi_0 x) * wi_1 x), gelu_new = tanh-approximated GELU
RELU = "relu"  # wo(relu(wi x))
FEED_FORWARD_PROJS = (GATED_GELU, RELU)
MODEL_TYPE = "t5"

# transformers' T5Config defaults: what a config.json means when it leaves a field out
HF_DEFAULTS = {
    "vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_heads": 8,
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": RELU,
}
# T5Config fields that do not change the encoder's inference math: the decoder, dropout, init, generation ids,
# and the values transformers derives from feed_forward_proj (dense_act_fn, is_gated_act).
T5_IGNORED_FIELDS = frozenset({
    "num_decoder_layers", "dropout_rate", "initializer_factor", "is_encoder_decoder", "is_decoder", "use_cache",
    "pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id", "classifier_dropout",
    "tie_word_embeddings", "scale_decoder_outputs", "dense_act_fn", "is_gated_act", "output_past", "n_positions",
    "gradient_checkpointing", "task_specific_params",
})
# Fields every transformers config.json may carry (PretrainedConfig bookkeeping and generation defaults).
GENERIC_IGNORED_FIELDS = frozenset({
    "architectures", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "_attn_implementation_autoset",
    "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "tf_legacy_loss",
    "pruned_heads", "chunk_size_feed_forward", "cross_attention_hidden_size", "add_cross_attention",
    "tie_encoder_decoder", "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
    "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "finetuning_task", "id2label", "label2id", "tokenizer_class", "prefix",
    "sep_token_id", "problem_type",
})


@dataclass(frozen=True)
class T5EncoderConfig:
    """Defaults are google/t5-v1_1-xxl, the text encoder of Latte-1 (and PixArt-alpha)."""

    vocab_size: int = 32128  # embedding rows (the tokenizer uses 32100 of them: 32000 pieces + 100 sentinels)
    d_model: int = 4096  # hidden size
    d_kv: int = 64  # size of one attention head (d_model need not equal num_heads * d_kv)
    d_ff: int = 10240  # feed-forward hidden size
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32  # position-bias rows: half per direction, half of those exact
    relative_attention_max_distance: int = 128  # distances from here on share the last bucket
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = GATED_GELU

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"T5 {name}={value!r}: must be a positive integer")
        if self.relative_attention_num_buckets < 4:
            raise ValueError(f"T5 relative_attention_num_buckets={self.relative_attention_num_buckets}: the "
                             "bidirectional buckets need at least 4 (2 per direction)")
        if self.feed_forward_proj not in FEED_FORWARD_PROJS:
            raise ValueError(f"T5 feed_forward_proj={self.feed_forward_proj!r} is not supported: the cells "
                             f"implement {GATED_GELU!r} (T5 v1.1) and {RELU!r} (T5 v1.0)")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"T5 layer_norm_epsilon={self.layer_norm_epsilon!r}: must be > 0")

    @property
    def is_gated(self):
        return self.feed_forward_proj == GATED_GELU

    @property
    def num_parameters(self):
        """Parameters of the encoder (the shared embedding counted once)."""
        inner = self.num_heads * self.d_kv
        attention = 4 * self.d_model * inner
        feed_forward = (3 if self.is_gated else 2) * self.d_model * self.d_ff
        per_layer = attention + feed_forward + 2 * self.d_model  # + the two RMSNorm weights
        return (self.vocab_size * self.d_model + self.num_layers * per_layer
                + self.relative_attention_num_buckets * self.num_heads + self.d_model)

    @classmethod
    def from_dict(cls, fields):
        """From to_dict's output (the sidecar record); an unknown field is an error naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown T5 encoder field(s) {unknown}: the fields are {sorted(known)}")
        return cls(**fields)

    @classmethod
    def from_hf_config(cls, fields):
        """From the dict in a transformers T5 config.json; fields it leaves out take transformers' defaults.

        Decoder, dropout, generation and bookkeeping fields are ignored (they do not change the encoder);
        any other field is an error naming it, and so are model types other than t5 and unsupported
        feed_forward_proj values.
        """
        model_type = fields.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"config.json has model_type={model_type!r}: only transformers' 't5' encoders "
                             "(T5 v1.0 / v1.1 layouts) can be converted")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known - T5_IGNORED_FIELDS - GENERIC_IGNORED_FIELDS - {"model_type"})
        if unknown:
            raise ValueError(f"config.json field(s) {unknown} are not T5Config fields latte-ms knows: check that "
                             "the file is a transformers T5 config (the architecture fields are "
                             f"{sorted(known)})")
        return cls(**{name: fields.get(name, HF_DEFAULTS[name]) for name in known})

    def to_dict(self):
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Named variants
# ---------------------------------------------------------------------------------------------------------

T5_ENCODERS = {
    # Latte-1's text_encoder/config.json (google/t5-v1_1-xxl): 4.76e9 parameters, 19 GB in fp32
    "t5-v1_1-xxl": T5EncoderConfig(),
    # tests: small enough to build in milliseconds, long enough sequences reach the logarithmic buckets
    "t5-tiny": T5EncoderConfig(vocab_size=128, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                               relative_attention_num_buckets=8, relative_attention_max_distance=16),
}


def t5_encoder_config(name):
    """The registered T5EncoderConfig called `name`; an error lists the names."""
    if name not in T5_ENCODERS:
        raise ValueError(f"unknown T5 encoder {name!r}: registered are {sorted(T5_ENCODERS)}")
    return T5_ENCODERS[name]
