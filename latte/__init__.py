"""latte-ms: Latte (latent diffusion transformer for video generation) in MindSpore.

Importing this package is cheap and never imports torch; submodules import MindSpore as needed.
"""

__version__ = "0.1.0"
