"""Video quality metrics (FVD, FID, IS, video IS) as StyleGAN-V's metric code computes them, which the official
Latte evaluation (tools/calc_metrics_for_dataset.py) uses: statistics (stats), detectors (i3d, inception, c3d),
the clip and frame plans (clips) and the per-metric recipes (recipes)."""
