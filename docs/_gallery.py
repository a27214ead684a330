"""The gallery's reset hook, referenced by name from conf.py (a picklable configuration)."""

from pathlib import Path

STYLE = Path(__file__).resolve().parents[1] / "examples" / "gallery.mplstyle"


def reset_matplotlib(gallery_conf, fname):
    """Before each example: matplotlib's defaults plus the gallery's style, as make_figures."""
    import matplotlib
    import matplotlib.pyplot as plt

    plt.close("all")
    matplotlib.rcdefaults()
    matplotlib.style.use(STYLE)
    # sphinx-gallery saves each animation's thumbnail with the default writer (ffmpeg, absent)
    matplotlib.rcParams["animation.writer"] = "pillow"
