"""Building a named Latte variant."""
from latte.models.latte import Latte
from latte.models.registry import model_spec


def create_latte(model_name, **kwargs):
    """Latte(**spec, **kwargs) for a named variant, e.g. create_latte('Latte-XL/2', num_frames=16, input_size=32)."""
    return Latte(**model_spec(model_name), **kwargs)
