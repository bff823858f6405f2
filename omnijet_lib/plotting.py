"""Figures in mplhep style: distributions with ratio panels, jets in the (eta_rel, phi_rel) plane."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib.pyplot as plt
import mplhep as hep
import numpy as np

from omnijet_lib.data.geometry import ILD_ECAL, CalorimeterGeometry
from omnijet_lib.data.showers import Showers

STYLE = hep.style.CMS  # a clean HEP style; no experiment label is drawn


def use_style() -> None:
    """Switch matplotlib to the project's mplhep style."""
    plt.style.use(STYLE)


def compare_distributions(
    samples: dict[str, np.ndarray],
    *,
    bins: int | np.ndarray = 40,
    xlabel: str = "",
    reference: str | None = None,
    density: bool = True,
    logy: bool = False,
    logx: bool = False,
    weights: dict[str, np.ndarray] | None = None,
    ylabel: str | None = None,
    ratio_range: tuple[float, float] = (0.0, 2.0),
):
    """Histogram several samples of one observable, with a ratio panel to ``reference``.

    Returns the figure.  Error bars are Poisson (sqrt of the summed squared
    weights), propagated to the ratio.  Integer samples (multiplicities) get bins
    centred on whole numbers; ``logx`` spaces the bins logarithmically (spectra).
    ``weights`` per sample turn a histogram into a profile, e.g. hit layers
    weighted by hit energy / number of showers: mean energy per layer.
    """
    reference = reference or next(iter(samples))
    weights = weights or {}
    finite = np.concatenate([np.asarray(v)[np.isfinite(v)] for v in samples.values()])
    if logx:
        finite = finite[finite > 0]
    if np.ndim(bins) == 0:
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        if logx:
            lo, hi = (lo, hi) if finite.size and hi > lo else (1e-3, 1.0)
            bins = np.geomspace(lo, hi, int(bins) + 1)
        elif finite.size and np.all(
            finite == np.round(finite)
        ):  # counts: one bin per integer, or a whole number of them
            width = max(1, int(np.ceil((hi - lo + 1) / int(bins))))
            bins = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + width + 0.5, width)
        else:
            bins = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(7, 7), gridspec_kw={"height_ratios": (3, 1)}, sharex=True)
    counts, errors = {}, {}
    for name, values in samples.items():
        w = weights.get(name)
        h, _ = np.histogram(values, bins=bins, weights=w)
        h2 = h if w is None else np.histogram(values, bins=bins, weights=np.square(w))[0]
        scale = 1.0 / (h.sum() * np.diff(bins)) if density and h.sum() else np.ones(len(h))
        counts[name], errors[name] = h * scale, np.sqrt(h2) * scale
        tag = ", reference" if name == reference else ""
        hep.histplot(counts[name], bins, yerr=errors[name], ax=ax, label=f"{name} ({len(values)}{tag})")
    ax.set_ylabel(ylabel or ("density" if density else "entries"))
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * (10 if logy else 1.35))  # headroom for the legend
    ax.legend(fontsize="small")
    ref, ref_err = counts[reference], errors[reference]
    for name in samples:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = counts[name] / ref
            r_err = r * np.hypot(errors[name] / counts[name], ref_err / ref)
        # where the reference is empty the ratio is undefined: drawn at 0 (outside the window's interest)
        drawable = np.isfinite(r)
        hep.histplot(np.where(drawable, r, 0.0), bins, yerr=np.where(drawable, r_err, 0.0), ax=rax, histtype="errorbar")
    rax.axhline(1.0, color="grey", lw=1, ls="--")
    rax.set_ylim(*ratio_range)
    rax.set_ylabel("ratio")
    rax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def draw_jet(eta_rel, phi_rel, pt, *, ax=None, title: str = "", charge=None, radius: float = 0.8):
    """One jet in the (eta_rel, phi_rel) plane; marker area grows with pT, colour shows charge."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    pt = np.asarray(pt)
    sizes = 400 * pt / pt.max() if pt.size else pt
    colours = "tab:blue" if charge is None else np.where(np.asarray(charge) == 0, "tab:grey", "tab:red")
    ax.scatter(eta_rel, phi_rel, s=sizes, c=colours, alpha=0.6, edgecolors="k", linewidths=0.3)
    ax.add_patch(plt.Circle((0, 0), radius, fill=False, ls="--", color="grey"))
    ax.set_xlim(-radius * 1.1, radius * 1.1)
    ax.set_ylim(-radius * 1.1, radius * 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$\eta_\mathrm{rel}$")
    ax.set_ylabel(r"$\phi_\mathrm{rel}$")
    ax.set_title(title, fontsize="small")
    return ax


# Binning and scales of each named observable (the papers' figures); profiles are mean energy per bin.
_OBSERVABLE_PLOTS = {
    "pt": {"logy": True},
    "cell_energy": {"bins": np.geomspace(1e-2, 1e3, 51), "logx": True, "logy": True},
    "longitudinal_profile": {"density": False, "ylabel": "mean energy [MeV]"},  # bins: the geometry's layers
    "radial_profile": {"density": False, "logy": True, "ylabel": "mean energy [MeV]"},
}


def compare_observable(
    distributions: dict[str, dict], name: str, *, reference: str | None = None, geometry: CalorimeterGeometry = ILD_ECAL
):
    """One named observable of several samples, e.g. {"simulated": ..., "generated": ...}, with a ratio panel.

    ``distributions`` maps a sample's label to its observables by name, each a
    :class:`~omnijet_lib.metrics.distributions.Distribution`: a jet sample's
    :func:`~omnijet_lib.metrics.generation_quality.jet_distributions` or a shower
    sample's :func:`~omnijet_lib.metrics.shower_quality.shower_distributions`.
    The axis label and binning come with the observable's name; the profiles' bins
    with the showers' ``geometry`` (its layers; its radial bins on a cylindrical grid).
    """
    from omnijet_lib.metrics.generation_quality import OBSERVABLES
    from omnijet_lib.shower_observables import SHOWER_OBSERVABLES

    labels = {**OBSERVABLES, **SHOWER_OBSERVABLES}
    if name not in labels:
        msg = f"unknown observable {name!r}; known: {sorted(labels)}"
        raise ValueError(msg)
    samples = {label: d[name].values for label, d in distributions.items()}
    weights = {label: d[name].weights for label, d in distributions.items() if d[name].weights is not None}
    options = dict(_OBSERVABLE_PLOTS.get(name, {}))
    if name == "longitudinal_profile":
        options["bins"] = np.arange(geometry.n_layers + 1) - 0.5
    elif name == "radial_profile":
        options["bins"] = _radial_plot_bins(geometry)
        if geometry.grid == "cylindrical":
            labels[name] = "distance $r$ from the shower axis [mm]"
    return compare_distributions(samples, xlabel=labels[name], reference=reference, weights=weights or None, **options)


def _radial_plot_bins(geometry: CalorimeterGeometry) -> np.ndarray:
    """1-cell bins as far as the grid is wide (a shower in its middle: past its corners), a cylindrical grid's own."""
    if geometry.grid == "cylindrical":
        return np.asarray(geometry.radial_edges_mm, dtype=np.float64)
    return np.arange(0.0, max(geometry.n_x, geometry.n_y) + 1.0)


def compare_depth_profiles(
    showers: dict[str, Showers], *, unit: str = "interaction_length", reference: str | None = None
):
    """Mean visible energy against depth in interaction (``"interaction_length"``) or radiation (``"radiation_length"``)
    lengths, one sample per label, with a ratio panel: the longitudinal profile read in the detector's physics units.

    Each hit above threshold counts at the depth of its layer's active material; the bins are the layers'
    boundaries, so a layer is a bin (:meth:`~omnijet_lib.data.geometry.CalorimeterGeometry.layer_depth_lambda`).
    """
    from omnijet_lib.metrics.shower_quality import depth_profile

    profiles = {label: depth_profile(s, unit=unit) for label, s in showers.items()}
    geometry = next(iter(showers.values())).geometry
    thickness = geometry.layer_lambda if unit == "interaction_length" else geometry.layer_x0
    edges = np.concatenate([[0.0], np.cumsum(thickness)])
    symbol = r"\lambda_I" if unit == "interaction_length" else "X_0"
    fig = compare_distributions(
        {label: p.values for label, p in profiles.items()}, weights={label: p.weights for label, p in profiles.items()},
        bins=edges, density=False, reference=reference, xlabel=f"depth [${symbol}$]", ylabel="mean energy [MeV]",
    )  # fmt: skip
    return fig


def plot_energy_slices(slices: dict[str, list[dict]], *, reference: str | None = None):
    """Visible energy sum and hits against the incident energy, simulated and per model: mean ± standard deviation,
    and the energy sum's relative width (the resolution).

    ``slices`` maps a model's name to its :func:`~omnijet_lib.metrics.energy_slices.energy_slices`
    rows; the simulated points are taken from ``reference`` (default: the first
    model), as every model was compared with the same simulated showers.
    """
    reference = reference or next(iter(slices))
    energies = np.array([r["incident_energy"] for r in slices[reference]])
    fig, axes = plt.subplots(1, 3, figsize=(20, 5.5), layout="constrained")  # the labels clear of each other
    for ax, observable, label in (
        (axes[0], "energy_sum", "visible energy sum [MeV]"),
        (axes[1], "n_hits", "hits above threshold"),
    ):
        rows = slices[reference]
        ax.errorbar(energies, [r[f"{observable}_simulated_mean"] for r in rows],
                    yerr=[r[f"{observable}_simulated_std"] for r in rows], fmt="o", capsize=4,
                    label="simulated")  # fmt: skip
        for k, (name, rows) in enumerate(slices.items()):
            shifted = energies + 1.5 * (k + 1)  # side by side, not on top of each other
            ax.errorbar(shifted, [r[f"{observable}_generated_mean"] for r in rows],
                        yerr=[r[f"{observable}_generated_std"] for r in rows], fmt="s", capsize=4, label=name)  # fmt: skip
        ax.set_xlabel("incident energy [GeV]")
        ax.set_ylabel(label)
        ax.set_title("mean ± standard deviation", fontsize="small")
        ax.legend()
    ax = axes[2]  # the resolution: relative width of the visible energy sum
    rows = slices[reference]
    ax.plot(energies, [r["energy_sum_simulated_std"] / r["energy_sum_simulated_mean"] for r in rows], "o",
            label="simulated")  # fmt: skip
    for name, rows in slices.items():
        ax.plot(energies, [r["energy_sum_generated_std"] / r["energy_sum_generated_mean"] for r in rows], "s",
                label=name)  # fmt: skip
    ax.set_xlabel("incident energy [GeV]")
    ax.set_ylabel(r"$\sigma(E_\mathrm{sum}) / \langle E_\mathrm{sum} \rangle$")
    ax.set_ylim(bottom=0)
    ax.set_title("energy-sum resolution", fontsize="small")
    ax.legend()
    return fig


def draw_shower(showers, index: int, *, ax=None, title: str = "", threshold: float | None = None):
    """Shower ``index`` in 3-D on its grid: one marker per hit above ``threshold`` [MeV] (None: the geometry's),
    colour and size by log energy.  Axes in cell indices (angular and radial bins on a cylindrical grid)."""
    if ax is None:
        ax = plt.figure(figsize=(6, 6)).add_subplot(projection="3d")
    threshold = showers.threshold if threshold is None else threshold
    hits = showers.hits[index]
    hits = hits[hits[:, 3] > threshold]
    log_e = np.log10(hits[:, 3])
    sizes = 4 + 30 * (log_e - log_e.min()) / max(np.ptp(log_e), 1e-9) if len(hits) else 1.0
    points = ax.scatter(hits[:, 0], hits[:, 2], hits[:, 1], c=log_e, s=sizes, cmap="viridis", alpha=0.7)
    n_x, n_y, n_layers = showers.geometry.shape
    ax.set_xlim(0, n_x - 1)
    ax.set_ylim(0, n_layers - 1)
    ax.set_zlim(0, n_y - 1)
    x, y = ("x [cells]", "y [cells]") if showers.geometry.grid == "cartesian" else ("angular bin", "radial bin")
    for axis, label in ((ax.xaxis, x), (ax.yaxis, "layer z"), (ax.zaxis, y)):
        axis.set_label_text(label, fontsize="x-small")
    ax.tick_params(labelsize="x-small")
    ax.set_title(title or f"{len(hits)} hits", fontsize="small")
    bar = ax.figure.colorbar(points, ax=ax, shrink=0.5, pad=0.12)
    bar.set_label(r"$\log_{10}(E / \mathrm{MeV})$", fontsize="x-small")
    bar.ax.tick_params(labelsize="x-small")
    return ax


def plot_learning_curves(histories: dict[str, list[dict]], *, ylabel: str, train: bool = True):
    """Loss per epoch of one or more training runs (``TrainingResult.history``): validation, and training if asked."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, history in histories.items():
        epochs = [record["epoch"] + 1 for record in history]
        prefix = f"{name}: " if len(histories) > 1 else ""
        if train:
            ax.plot(epochs, [record["train_loss"] for record in history], "o-", label=f"{prefix}train")
        ax.plot(epochs, [record["val_loss"] for record in history], "s-", label=f"{prefix}validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return fig


def plot_epoch_values(history: list[dict], keys: dict[str, str]):
    """Numbers an ``evaluate`` recorded per epoch (``TrainingResult.history``): one panel per key, titled by ``keys[key]``."""
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    epochs = [record["epoch"] + 1 for record in history]
    for ax, (key, label) in zip(axes[0], keys.items()):
        ax.plot(epochs, [record[key] for record in history], "o-")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    return fig


def plot_stop_probability(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, reference: str, min_count: int = 20):
    """P(STOP | t tokens) against t for several prefix sets, with a ratio panel to ``reference``.

    ``curves`` maps a name to (mean probability, number of sequences) per t, as
    :func:`omnijet_lib.generation.stop_probability_by_length` returns; points resting on
    fewer than ``min_count`` sequences are not drawn.
    """
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(7, 7), gridspec_kw={"height_ratios": (3, 1)}, sharex=True)
    shown = {}
    for name, (probability, count) in curves.items():
        t = np.flatnonzero(count >= min_count)
        shown[name] = dict(zip(t, probability[t]))
        ax.plot(t, probability[t], drawstyle="steps-mid", label=f"{name} ({int(count[0])} sequences)")
    ax.set_yscale("log")
    ax.set_ylabel("P(STOP | prefix)")
    ax.legend(fontsize="small")
    for name, values in shown.items():
        t = np.array([k for k in values if k in shown[reference] and shown[reference][k] > 0], dtype=int)
        if name != reference and len(t):
            rax.plot(t, [values[k] / shown[reference][k] for k in t], drawstyle="steps-mid")
    rax.axhline(1, color="grey", linestyle="--", linewidth=1)
    rax.set_ylabel(f"ratio to\n{reference}", fontsize="small")
    rax.set_xlabel("tokens so far (constituents)")
    return fig


def show_and_save(fig, output_dir: str | os.PathLike, name: str) -> Path:
    """Save ``fig`` as ``output_dir/name.png``, show that PNG inline in a notebook, close the figure.

    Every notebook figure goes through here, so what a reader sees inline (in
    JupyterLab and in the executed ``.ipynb`` that papermill writes) is the file on
    disk, whatever matplotlib backend the kernel runs.  Closing the figure keeps
    the inline backend from drawing it a second time at the end of the cell.
    Outside a notebook (scripts, tests) it only saves.  Returns the path.
    """
    path = Path(output_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    png = _png(fig)
    path.write_bytes(png)
    if _in_notebook():
        from IPython.display import Image, display

        display(Image(data=png))
    return path


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill), where rich output is shown."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel, a dependency
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _png(fig) -> bytes:
    """``fig`` rendered as PNG bytes (the figure is closed): what is saved and what is shown."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")  # nothing cut off, whatever the layout
    plt.close(fig)
    return buffer.getvalue()


def overlay_residuals(
    residuals_by_tokenizer: dict[str, np.ndarray],
    *,
    xlabel: str = "",
    bins: int | np.ndarray = 60,
    range: tuple[float, float] | None = None,
    density: bool = True,
    core_quantiles: tuple[float, float] = (0.05, 0.95),
):
    """Residual (reconstructed - original) histograms of one observable, one step line per tokenizer.

    The legend gives each tokenizer's fitted shift mu and resolution sigma
    (:func:`omnijet_lib.metrics.resolution.fit_gaussian`); a dashed line marks
    0, a perfect reconstruction.  With ``bins`` a number, the bins span ``range``,
    by default the central 99% of all residuals together.  Non-finite residuals
    (undefined observables) are left out.  Returns the figure.
    """
    # Imported here: the resolution metrics pull in fastjet, which plotting otherwise does not need.
    from omnijet_lib.metrics.resolution import fit_gaussian

    if not residuals_by_tokenizer:
        msg = "no residuals to plot: residuals_by_tokenizer is empty"
        raise ValueError(msg)
    finite = {name: np.asarray(v, dtype=float)[np.isfinite(v)] for name, v in residuals_by_tokenizer.items()}
    if np.ndim(bins) == 0:
        pooled = np.concatenate(list(finite.values()))
        lo, hi = range if range is not None else (np.percentile(pooled, [0.5, 99.5]) if pooled.size else (-1.0, 1.0))
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, values in finite.items():
        fit = fit_gaussian(values, core_quantiles=core_quantiles)
        h, _ = np.histogram(values, bins=bins)
        scale = 1.0 / (h.sum() * np.diff(bins)) if density and h.sum() else np.ones(len(h))
        label = f"{name}: $\\mu$ = {fit.mu:.3g}, $\\sigma$ = {fit.sigma:.3g}"
        hep.histplot(h * scale, bins, ax=ax, histtype="step", label=label)
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if density else "entries")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_token_blobs(
    blobs: dict[str, np.ndarray],
    tokens,
    *,
    background: dict[str, dict[str, np.ndarray]] | None = None,
    title: str = "",
):
    """Where tokens decode to: eta_rel vs phi_rel and both against pT, one colour per token.

    ``blobs`` is :func:`omnijet_lib.metrics.token_quality.token_blobs` output;
    ``background`` maps a label to fixed points (e.g. every unconditional or
    binned token), drawn small and grey-toned behind the blobs.
    """
    pairs = (("eta_rel", "phi_rel"), ("eta_rel", "pt"), ("phi_rel", "pt"))
    labels = {"eta_rel": r"$\eta_\mathrm{rel}$", "phi_rel": r"$\phi_\mathrm{rel}$", "pt": r"$p_\mathrm{T}$ [GeV]"}
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    for (name, points), colour in zip((background or {}).items(), ("0.75", "0.45")):
        for ax, (x, y) in zip(axes, pairs):
            ax.scatter(points[x], points[y], s=2, color=colour, label=name, rasterized=True)
    for i, token in enumerate(np.atleast_1d(tokens)):
        for ax, (x, y) in zip(axes, pairs):
            ax.scatter(blobs[x][i], blobs[y][i], s=4, alpha=0.5, label=f"token {token}", rasterized=True)
    for ax, (x, y) in zip(axes, pairs):
        ax.set_xlabel(labels[x])
        ax.set_ylabel(labels[y])
        if y == "pt":
            ax.set_yscale("log")
    axes[0].set_xlim(-0.8, 0.8)
    axes[0].set_ylim(-0.8, 0.8)
    axes[0].legend(fontsize="x-small", markerscale=3, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def token_explorer(tokenizers: dict, *, context_pool, default_tokens, n_contexts: int = 500, context_size: int = 50):
    """JupyterLab widget: pick a tokenizer and token numbers, see their reconstructions in context.

    The picture is an ``Image`` widget whose value is replaced on each *draw*, and
    messages go to an ``HTML`` widget: no ``Output`` widget captures display
    messages, which headless runners (papermill's nbclient) have to emulate and
    which made them hang now and then.  Needs ipywidgets (installed with the
    project); imported here so that headless use of the plotting module never
    requires it.
    """
    try:
        import ipywidgets as widgets
    except ImportError as err:  # pragma: no cover - ipywidgets is a dependency
        msg = "the token explorer needs ipywidgets: pip install ipywidgets"
        raise ImportError(msg) from err
    from IPython.display import display

    from omnijet_lib.metrics.token_quality import fixed_points, token_blobs

    choice = widgets.Dropdown(options=list(tokenizers), description="tokenizer")
    numbers = widgets.Text(value=" ".join(str(t) for t in default_tokens), description="tokens")
    button = widgets.Button(description="draw")
    message = widgets.HTML()
    picture = widgets.Image(format="png")

    def draw(_=None):
        tokenizer = tokenizers[choice.value]
        try:
            tokens = [int(t) for t in numbers.value.replace(",", " ").split()]
            if not tokens or not all(1 <= t <= tokenizer.codebook_size for t in tokens):
                raise ValueError
        except ValueError:
            message.value = f"tokens must be integers in 1..{tokenizer.codebook_size}, separated by spaces"
            return
        message.value = f"drawing {len(tokens)} token(s) of {choice.value} in {n_contexts} contexts ..."
        blobs = token_blobs(
            tokenizer, tokens, context_pool=context_pool[choice.value], n_contexts=n_contexts, context_size=context_size
        )
        background = {
            f"{n} fixed points": fixed_points(t)
            for n, t in tokenizers.items()
            if n != choice.value and not getattr(getattr(t, "config", None), "conditional", False)
        }
        picture.value = _png(plot_token_blobs(blobs, tokens, background=background, title=choice.value))
        message.value = ""

    button.on_click(draw)
    draw()  # the first picture is there when the widget appears
    display(widgets.VBox([widgets.HBox([choice, numbers, button]), message, picture]))
