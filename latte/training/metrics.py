"""Training metrics: a CSV row per logged step (flushed at once) and a loss-curve PNG."""
import csv
import os

METRIC_FIELDS = ("step", "epoch", "loss", "lr", "loss_scale", "overflow_steps", "step_time_s", "images_per_s")


class MetricsLog:
    """Appends rows to <output>/metrics.csv; on resume, rows after the resumed step are dropped first."""

    def __init__(self, path, resume_step=None):
        self.path = path
        rows = self.read(path) if os.path.exists(path) else []
        if resume_step is not None:
            rows = [r for r in rows if int(r["step"]) <= resume_step]
        else:
            rows = []
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    @staticmethod
    def read(path):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def append(self, **row):
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=METRIC_FIELDS).writerow({k: row.get(k, "") for k in METRIC_FIELDS})


def plot_loss_curve(metrics_path, png_path, smooth=20):
    """Writes the loss (raw and moving average) against step as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = MetricsLog.read(metrics_path)
    if not rows:
        return None
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, loss, alpha=0.35, label="loss")
    if len(loss) >= smooth:
        kernel = np.ones(smooth) / smooth
        ax.plot(steps[smooth - 1:], np.convolve(loss, kernel, mode="valid"), label=f"mean of {smooth}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mse + vb)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = f"{png_path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
