"""MindSpore cells of latte-ms."""
from latte.models.latte import Latte
from latte.models.registry import LATTE_MODELS, create_latte, model_spec
