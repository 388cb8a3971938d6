"""The posts' claims, each quoted and set against the committed runs that test it.

`python -m common.report --write` puts two tables between the claims markers of
results/README.md: the claims, each with the post's sentence (Chinese, with an English
translation) under the post's own section heading, the experiment (the exact commands), what
the runs measured, the rule and the verdict; then the places where the code departs from a
post's equation, as measured differences without a verdict. A claim whose runs are not all
committed yet shows "not run yet". Nothing here is typed by hand but the quotes, the commands
and the rules.

The rules are fixed before the runs they judge and each can fail; the verdicts and the
statistics behind them are common/rules.py's.
"""
import json
import math
import re
from pathlib import Path

from common import journal
from common.rules import (
    INCONCLUSIVE, LOWER_RULE, MIN_SEEDS, NOT_SUPPORTED, SUPPORTED, Arm, Missing, apart, combine,
    each_seed, judged, lower, mean_sd, num, same, t_quantile)

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- claims:start -->", "<!-- claims:end -->"

GAUSS = "[7725](https://kexue.fm/archives/7725)"
VMF = "[8404](https://kexue.fm/archives/8404)"
GUMBEL = "[6705](https://kexue.fm/archives/6705)"
FLOW = "[5776](https://kexue.fm/archives/5776)"


# ---------------------------------------------------------------- reading the committed runs


def metrics(folder):
    """results/<folder>/metrics.json, checked against its manifest."""
    path = REPO / "results" / folder
    if not (path / "metrics.json").exists():
        raise Missing(f"results/{folder}")
    return Metrics(folder, json.loads(journal.read_published(path, "metrics.json")))


class Metrics(dict):
    """A run's metrics; one it lacks (a run from before the metric existed) raises Missing."""

    def __init__(self, folder, values):
        super().__init__(values)
        self.folder = folder

    def __missing__(self, key):
        raise Missing(f"{key} of results/{self.folder}")


def history(folder):
    path = REPO / "results" / folder / "history.csv"
    if not path.exists():
        raise Missing(f"results/{folder}")
    return journal.read_history(path)


def seed_runs(folder, need=1):
    """The run folders (relative to results/) of the seed study in results/<folder>, or the
    folder alone where it has no study; Missing if fewer than `need`."""
    path = REPO / "results" / folder / "seeds.json"
    if path.exists():
        runs = json.loads(path.read_text())["runs"].values()
        found = [str(Path(r).relative_to("results")) for r in runs]
    else:
        metrics(folder)
        found = [folder]
    if len(found) < need:
        raise Missing(f"{need} seeds of results/{folder} (it has {len(found)})")
    return found


def seed_values(folder, key, need=MIN_SEEDS):
    return [metrics(f)[key] for f in seed_runs(folder, need)]


def best_within(folder, epochs, need=MIN_SEEDS):
    """Each seed's lowest validation loss in its first `epochs` epochs."""
    out = []
    for f in seed_runs(folder, need):
        h = history(f)
        if len(h["val_loss"]) < epochs:
            raise Missing(f"results/{f} with {epochs} epochs")
        out.append(float(min(h["val_loss"][:epochs])))
    return out


def arm(label, folder, key, se_key=None, need=MIN_SEEDS):
    """An `Arm` of a seed study's values of `key` (and their standard errors over images)."""
    runs = [metrics(f) for f in seed_runs(folder, need)]
    return Arm(label, [m[key] for m in runs], [m[se_key] for m in runs] if se_key else None)


def figure(folder, name, label):
    """A link to a run's figure from results/README.md, where the table lives."""
    return f"[{label}]({folder}/{name})"


# ---------------------------------------------------------------- 7725: the Gaussian VAE


# the default seeds 1-4 predate the latent metrics: a study of the default settings beside them
VAE, NO_KL = "claims/vae_kl/vae_keras", "claims/vae_no_kl/vae_keras"


def ae_holes():
    vae = arm("VAE", VAE, "latent_empty_cells")
    ae = arm("without KL", NO_KL, "latent_empty_cells")
    text, verdict = lower(vae, ae, "empty cells of a 20×20 grid over the codes' central 98%: ",
                          digits=3)
    sd = lambda f: ", ".join(num(s, 2) for s in metrics(f)["latent_code_sd"])  # noqa: E731
    return (f"{text}; seed 0's code sd per axis ({sd(NO_KL)}) without the KL, ({sd(VAE)}) with "
            f"it", f"the VAE has fewer empty cells: {LOWER_RULE}", verdict,
            [figure(NO_KL, "latent_scatter.png", "codes without KL"),
             figure(VAE, "latent_scatter.png", "codes of the VAE"),
             figure(NO_KL, "manifold.png", "manifold without KL")])


# ---------------------------------------------------------------- 8404: the vMF-VAE


VMF_KAPPAS = {5: "claims/vmf_kappa5/vae_vmf_keras", 10: "claims/vmf_kappa10/vae_vmf_keras",
              20: "vae_vmf_keras", 40: "claims/vmf_kappa40/vae_vmf_keras",
              80: "claims/vmf_kappa80/vae_vmf_keras"}


def kappa_tradeoff():
    recon = {k: arm(f"κ={k}", f, "test_loss") for k, f in VMF_KAPPAS.items()}
    kappas = list(VMF_KAPPAS)
    steps = [lower(recon[b], recon[a]) for a, b in zip(kappas, kappas[1:])]
    text, verdict = judged(steps)
    totals = "; ".join(f"κ={k}: KL {num(metrics(f)['kl_constant'], 2)}, NLL "
                       f"{mean_sd(seed_values(f, 'test_nll'))}" for k, f in VMF_KAPPAS.items())
    return (f"test reconstruction loss (BCE), each step of κ: {text}. By construction (the closed "
            f"form, not measured): the KL rises with κ. Totals: {totals}",
            f"at every step of κ the reconstruction loss falls: {LOWER_RULE}; supported if every "
            "step is, not supported if any step rises beyond its interval", verdict,
            [figure(f, "samples.png", f"κ={k}") for k, f in VMF_KAPPAS.items()])


VMF_BENCH = "results/benchmarks/vmf_table.txt"
# what the claims' commands that are not model runs write, relative to results/
COMMAND_OUTPUTS = {"python benchmarks/vmf_table.py": ["benchmarks/vmf_table.txt"]}


def kappa_thousands():
    path = REPO / VMF_BENCH
    if not path.exists():
        raise Missing(VMF_BENCH)
    text = path.read_text()
    ks = [float(hi) for k, hi in re.findall(r"kappa=(\d+)\s+KS in \[[^,]+, ([^\]]+)\]", text)
          if float(k) >= 1000]
    uniforms = float(re.search(r"uniforms behind every table below: KS ([\d.e-]+)", text)[1])
    build = float(re.search(r"build_s=([\d.e-]+)", text)[1])
    blog = float(re.search(r"blog_build_s=([\d.e-]+)", text)[1])
    # a table as exact as its 10^6 uniforms: KS within 1e-4 of theirs (the quadrature's error)
    exact = max(ks) <= uniforms + 1e-4
    fast = build < 1.0
    verdict = combine([SUPPORTED if exact else NOT_SUPPORTED, SUPPORTED if fast else NOT_SUPPORTED])
    return (f"`python benchmarks/vmf_table.py` ({VMF_BENCH}): largest Kolmogorov–Smirnov "
            f"distance to the exact CDF over d ∈ {{2, 3, 4, 16, 128}} at κ = 1000 and 10⁵: "
            f"{max(ks):.3g}, that of the table's own 10⁶ uniforms {uniforms:.3g}; the 10⁶-draw "
            f"table builds in {build:.3g} s (the blog's recipe {blog:.3g} s)",
            "supported if the KS distance at κ ≥ 1000 is within 10⁻⁴ of the uniforms' own (as "
            "exact as the draws allow) and the table builds in under 1 s; not supported if "
            "both fail, mixed if one does", verdict, [])


# ---------------------------------------------------------------- 6705: Gumbel-Softmax


GS = "vae_keras_cnn_gs"
GS_RUNS = {"annealed": f"claims/gs_anneal/{GS}", "τ = 1 fixed": f"claims/gs_tau1/{GS}",
           "τ = 0.1 fixed": f"claims/gs_tau0.1/{GS}",
           "plain softmax, annealed": f"claims/gs_softmax/{GS}"}
GS_METRICS = (("discrete −ELBO", "test_neg_elbo", "test_neg_elbo_stderr"),
              ("NLL", "test_nll", "test_nll_stderr"))


def gs_compare(better, worse):
    """Both metrics of the discrete model, `better` against `worse`."""
    parts = []
    for what, key, se in GS_METRICS:
        a = arm(better, GS_RUNS[better], key, se)
        b = arm(worse, GS_RUNS[worse], key, se)
        parts.append(lower(a, b, f"{what}: "))
    return parts


def gs_listing(names):
    out = []
    for n in names:
        cells = [f"{what} {mean_sd(seed_values(GS_RUNS[n], key))}" for what, key, _ in GS_METRICS]
        relaxed = mean_sd(seed_values(GS_RUNS[n], "test_relaxed_neg_elbo"))
        out.append(f"{n}: {', '.join(cells)}, the blog's loss + 73.683 (relaxed −ELBO) {relaxed}")
    return "; ".join(out)


GS_RULE = (f"annealing is lower on the discrete model's −ELBO and NLL: {LOWER_RULE}; mixed if "
           "the metrics or the arms disagree")
# the blog's length, 30 epochs: the default study (annealed) against τ = 1 held fixed
GS_30 = {"annealed": GS, "τ = 1 fixed": f"claims/gs_tau1_30/{GS}"}


def annealing_needed():
    parts = gs_compare("annealed", "τ = 1 fixed") + gs_compare("annealed", "τ = 0.1 fixed")
    names = list(GS_RUNS)[:3]
    long = []
    for what, key, se in GS_METRICS:
        a, b = (arm(n, f, key, se) for n, f in GS_30.items())
        long.append(lower(a, b, f"{what}: "))
    text, verdict = judged(parts + long)
    listing30 = "; ".join(f"{n}: " + ", ".join(f"{what} {mean_sd(seed_values(f, key))}"
                                              for what, key, _ in GS_METRICS)
                          for n, f in GS_30.items())
    return (f"after 10 epochs, 1,000 test images: {gs_listing(names)}. After the blog's 30 epochs "
            f"(annealed: the default study, NLL on 10,000 and 2,000 test images; τ = 1: 1,000): "
            f"{listing30}. Differences at 10 epochs, then at 30: {text}. The 'closer to one-hot' "
            "half is the 6705 row above",
            GS_RULE + "; at 10 epochs against τ = 1 and τ = 0.1, at 30 against τ = 1", verdict,
            [figure(GS_RUNS[n], "samples.png", n) for n in names]
            + [figure(GS_30["τ = 1 fixed"], "samples.png", "τ = 1, 30 epochs")])


VANISH = 10  # "vanishes": the gradient's size falls at least tenfold from τ = 1 to τ = 0.01


def gradient_vanishes():
    runs = [metrics(f) for f in seed_runs(GS_30["τ = 1 fixed"], MIN_SEEDS)]
    parts, listing = [], []
    for what, key in (("typical estimate (median norm)", "median"),
                      ("expected gradient (norm of the mean over draws)", "of_mean")):
        ratios = [m["grad_norm_by_tau"]["1"][key] / m["grad_norm_by_tau"]["0.01"][key]
                  for m in runs]
        verdict = (SUPPORTED if all(r >= VANISH for r in ratios) else
                   NOT_SUPPORTED if all(r < 1 for r in ratios) else INCONCLUSIVE)
        parts.append((f"{what}, τ = 1 over τ = 0.01: " + ", ".join(f"{r:.3g}" for r in ratios),
                      verdict))
    for i, m in enumerate(runs):
        listing.append(f"seed {i}: " + ", ".join(f"τ={t} {v['median']:.3g}"
                                                 for t, v in m["grad_norm_by_tau"].items()))
    means = ", ".join(f"τ={t} {v['mean']:.3g}" for t, v in runs[0]["grad_norm_by_tau"].items())
    text, verdict = judged(parts)
    return (f"the reparameterised gradient of −log p(x|y) in the logits, y = softmax((logits + g) "
            f"/ τ), {runs[0]['gradient_draws']} draws on each of {runs[0]['gradient_images']} test "
            f"images, on the models trained 30 epochs at τ = 1 (3 seeds), each evaluated at τ from "
            f"1 to 0.01: {text}. Median norm per τ: {'; '.join(listing)}. Mean norm, seed 0 (rare "
            f"large estimates near ties): {means}. The first half (closer to one-hot) holds by "
            "construction",
            f"'vanishes' as a fall of at least {VANISH}× from τ = 1 to τ = 0.01, in the typical "
            "estimate and in the expected gradient: each part supported if every seed falls that "
            "far, not supported if every seed's rises, inconclusive otherwise; mixed if the parts "
            "disagree", verdict, [])


def gumbel_not_softmax():
    text, verdict = judged(gs_compare("annealed", "plain softmax, annealed"))
    return (f"after 10 epochs, 1,000 test images: {gs_listing(['annealed', 'plain softmax, annealed'])}"
            f". Differences: {text}",
            f"Gumbel-Softmax is lower on both metrics: {LOWER_RULE}; mixed if they disagree",
            verdict, [figure(GS_RUNS["plain softmax, annealed"], "samples.png", "plain softmax")])


def reinforce_variance():
    runs = [metrics(f) for f in seed_runs(GS_RUNS["annealed"], MIN_SEEDS)]
    ratios = [min(m["grad_var_ratio_tau_max"], m["grad_var_ratio_final_tau"]) for m in runs]
    listing = "; ".join(f"seed {i}: {m['grad_var_ratio_tau_max']:.3g} at τ = 1, "
                        f"{m['grad_var_ratio_final_tau']:.3g} at τ = {num(m['final_tau'], 4)}"
                        for i, m in enumerate(runs))
    return (f"variance of single-sample gradient estimates ({runs[0]['gradient_draws']} per "
            f"image, {runs[0]['gradient_images']} test images) of the logits, summed, the annealed "
            f"model after 10 epochs, REINFORCE over reparameterised: {listing}",
            "'much larger' as a ratio of at least 10: supported if every seed's smaller ratio "
            "is, not supported if none is, inconclusive if the seeds disagree",
            each_seed(ratios, lambda r: r >= 10), [])


# ---------------------------------------------------------------- 5776: NICE


TEN = "claims/nice_10_epochs/nice"  # the blog's settings, 10 epochs
NOISE_RUNS = {"[0, 0.01]": "claims/nice_positive/nice", "[−0.005, 0.005]":
              "claims/nice_centred/nice", "Gaussian": "claims/nice_gaussian/nice"}
BLOG_NOISE = "[−0.01, 0]"
EQUIVALENT = 0.01  # "about the same": within 1% of the reference's dequantised NLL, in nats


def nice_arms(label, folder):
    """The blog's metric (best test loss, the density at the pixel values) and the dequantised
    bound of a 10-epoch NICE study."""
    return (Arm(label, best_within(folder, 10)),
            arm(label, folder, "test_dequantised_nll", "test_dequantised_nll_mc_se"))


def noise_same_loss():
    loss_ref, bound_ref = nice_arms(BLOG_NOISE, TEN)
    margin = EQUIVALENT * bound_ref.mean
    parts = []
    for name, folder in NOISE_RUNS.items():
        loss, bound = nice_arms(name, folder)
        parts += [same(loss_ref, loss, margin, "loss: "), same(bound_ref, bound, margin, "bound: ")]
    text, verdict = judged(parts)
    return (f"10 epochs, 3 seeds a kind; the blog's loss (best test loss): {loss_ref}, "
            + ", ".join(str(nice_arms(n, f)[0]) for n, f in NOISE_RUNS.items())
            + f"; the dequantised bound (nats): {bound_ref}, "
            + ", ".join(str(nice_arms(n, f)[1]) for n, f in NOISE_RUNS.items())
            + f". Differences against {BLOG_NOISE}: {text}. The blog's loss scores the density at "
              "the pixel values themselves, where a zero-mean noise is centred and a one-sided "
              "one is not",
            f"'about the same' as practical equivalence within ±{num(margin)} nats (1% of "
            f"{BLOG_NOISE}'s bound, {num(margin / (784 * math.log(2)), 3)} bits/dim) on both "
            "metrics: supported if every kind's 95% interval lies inside the band, not supported "
            "if one lies wholly outside, inconclusive otherwise; mixed if the metrics disagree",
            verdict, [figure(f, "samples.png", n) for n, f in NOISE_RUNS.items()])


def negative_noise_clips():
    parts = []
    for key, what, claimed_lower in (("sample_below_zero", "pixels below 0 (clipped)", False),
                                     ("sample_background", "background grey", True)):
        blog = arm(BLOG_NOISE, TEN, key)
        for name, folder in NOISE_RUNS.items():
            other = arm(name, folder, key)
            parts.append(lower(blog, other, f"{what}: ", 4) if claimed_lower
                         else lower(other, blog, f"{what}: ", 4))
    text, verdict = judged(parts)
    return (f"10 epochs, samples at std 0.75: {text}",
            f"the blog's noise clips more pixels and leaves a darker background than every "
            f"other kind: {LOWER_RULE}; mixed if the parts disagree", verdict,
            [figure(TEN, "samples.png", BLOG_NOISE)])


EQ7 = "claims/nice_eq7/nice"


def forward_direction():
    above = lower(arm("eq. 7", EQ7, "sample_above_one"), arm("eq. 9", TEN, "sample_above_one"),
                  "pixels above 1: ", 4)
    below = lower(arm("eq. 9", TEN, "sample_below_zero"), arm("eq. 7", EQ7, "sample_below_zero"),
                  "pixels below 0: ", 4)
    text, verdict = judged([above, below])
    return (f"10 epochs, samples at std 0.75, eq. 9 (the blog's) against eq. 7 as the forward "
            f"pass: {text}; best test loss {Arm('eq. 9', best_within(TEN, 10))}, "
            f"{Arm('eq. 7', best_within(EQ7, 10))}",
            f"eq. 9's samples have more pixels above 1 and fewer below 0: {LOWER_RULE}; mixed "
            "if the two disagree", verdict, [figure(EQ7, "samples.png", "eq. 7 forward")])


NO_SHUFFLE = "claims/nice_no_shuffle/nice"


def shuffle_matters():
    reverse, none = nice_arms("reversed", TEN), nice_arms("not shuffled", NO_SHUFFLE)
    text, verdict = judged([lower(reverse[0], none[0], "loss: "),
                            lower(reverse[1], none[1], "bound: ")])
    return (f"10 epochs: {text}", f"the reversed flow is lower on the blog's loss and the "
            f"dequantised bound: {LOWER_RULE}; mixed if they disagree", verdict,
            [figure(NO_SHUFFLE, "samples.png", "not shuffled")])


def scale_marks_black():
    default = [m for m in map(metrics, seed_runs("nice"))
               if "scale_black_mean" in m]  # not the seeds from before the metric
    ten = [metrics(f) for f in seed_runs(TEN, MIN_SEEDS)]
    runs = default + ten
    ratios = [m["scale_black_mean"] / m["scale_other_mean"] for m in runs]
    shown = lambda rs: ", ".join(f"{r:.3g}" for r in rs)  # noqa: E731
    return (f"mean exp(−s) over the {runs[0]['scale_black_pixels']} pixels black in every "
            f"training image over that of the others: {shown(ratios[:len(default)])} for the "
            f"default study's seeds with the metric ({len(default)} of them, 30 epochs), "
            f"{shown(ratios[len(default):])} for the 10-epoch seeds",
            "the black pixels get under half the others' scale: supported if every run's ratio "
            "is under 0.5, not supported if none is, inconclusive if they disagree",
            each_seed(ratios, lambda r: r < 0.5), [figure("nice", "scale.png", "exp(−s) per pixel")])


NOISELESS = "claims/noiseless/nice"


def best_within_20():
    parts, epochs = [], {}
    for label, folder in (("with noise", "nice"), ("without", NOISELESS)):
        epochs[label] = seed_values(folder, "best_epoch")
        parts.append((label, each_seed(epochs[label], lambda e: e <= 20)))
    return ("best epoch of each seed in 30: " + "; ".join(f"{k}: {', '.join(map(str, v))}"
                                                          for k, v in epochs.items())
            + ". NICE keeps the weights of the epoch with the best test loss, as the original "
              "script's checkpoint on its validation data (the test set) does, which flatters "
              "the figure",
            "supported if every seed's best epoch is at most 20, not supported if none is, "
            "inconclusive if they disagree; mixed if the two settings disagree",
            combine([v for _, v in parts]), [figure("nice", "loss_seeds.png", "the seeds' curves")])


BLOG_LOSS, ABOUT = -2200.0, 0.02


def reaches_2200():
    parts = []
    for label, folder in (("with the blog's noise", "nice"), ("without noise", NOISELESS)):
        best = Arm(label, best_within(folder, 20))
        h = t_quantile(best.n - 1) * best.sd / math.sqrt(best.n)
        lo, hi = best.mean - h, best.mean + h
        band = (BLOG_LOSS * (1 + ABOUT), BLOG_LOSS * (1 - ABOUT))
        verdict = (SUPPORTED if band[0] <= lo and hi <= band[1] else
                   NOT_SUPPORTED if hi < band[0] or lo > band[1] else INCONCLUSIVE)
        parts.append((f"{best}, 95% interval [{num(lo)}, {num(hi)}]", verdict))
    text, verdict = judged(parts)
    return (f"best test loss within 20 epochs: {text}",
            f"'about −2200' as within 2% ([{num(BLOG_LOSS * 1.02)}, {num(BLOG_LOSS * 0.98)}]): "
            "supported if the 95% interval of the seeds' mean lies inside, not supported if "
            "wholly outside, inconclusive otherwise; mixed if the settings disagree", verdict,
            [figure(NOISELESS, "loss_seeds.png", "the noiseless seeds' curves")])


def noise_prevents_overfitting():
    rise = {}
    for label, folder in (("with noise", "nice"), ("without", NOISELESS)):
        values = []
        for f in seed_runs(folder, MIN_SEEDS):
            h = history(f)
            values.append(float(h["val_loss"][-1]) - float(min(h["val_loss"])))
        rise[label] = Arm(label, values)
    bits = mean_sd(seed_values(NOISELESS, "test_dequantised_bits_per_dim"), 2)
    try:
        noisy = mean_sd(seed_values("nice", "test_dequantised_bits_per_dim"), 2)
    except Missing:  # seeds from before the bound
        noisy = (f"{num(metrics('nice')['test_dequantised_bits_per_dim'], 2)} (seed 0; its other "
                 "seeds predate the bound)")
    rises = lambda a: ", ".join(num(v) for v in a.values)  # noqa: E731
    return (f"how far the test loss after epoch 30 lies above the seed's best, nats: with noise "
            f"{rises(rise['with noise'])}; without {rises(rise['without'])} (the noiseless "
            "runs' training loss jumps near epoch 20 and falls again while the test loss keeps "
            f"rising). The dequantised bound (bits/dim) of the noiseless seeds {bits} against "
            f"the noisy default study's {noisy}. The samples half is not measured",
            "every noiseless seed ends further above its best than every noisy seed (by chance: "
            "1 in 20): supported; the reverse order: not supported; overlapping: inconclusive",
            apart(rise["with noise"], rise["without"]),
            [figure(NOISELESS, "loss_seeds.png", "noiseless curves"),
             figure("nice", "loss_seeds.png", "noisy curves")])


LITTLE_BELOW = (0.7, 1.0)  # "a little below 1": the best std in [0.7, 1)


def std_sweep():
    runs = [metrics(f) for f in seed_runs("nice", MIN_SEEDS)]
    best = [m["sample_fd_best_std"] for m in runs]
    lo, hi = LITTLE_BELOW
    where = each_seed(best, lambda b: lo <= b < hi)
    fd = lambda std: Arm(f"std {std}", [m["sample_fd_by_std"][std] for m in runs])  # noqa: E731
    beats_one = lower(fd("0.75"), fd("1"), "Fréchet distance: ")
    curves = "; ".join(f"seed {i}: " + ", ".join(f"{s} {v:.1f}" for s, v in
                                                 m["sample_fd_by_std"].items())
                       for i, m in enumerate(runs))
    text, verdict = judged([(f"best std per seed {', '.join(f'{b:g}' for b in best)}", where),
                            beats_one])
    return (f"Fréchet distance in pixel space between 10,000 clipped samples and the 10,000 test "
            f"images, sampling std 0.5 to 1.1, the default study (30 epochs): {curves}. {text}",
            f"supported if every seed's best std lies in [{lo}, {hi}) (a little below 1, not "
            f"below 0.7) and the post's 0.75 is closer than 1 ({LOWER_RULE}); not supported if "
            "no seed's best std lies there, inconclusive if the seeds disagree; mixed if the "
            "parts disagree", verdict,
            [figure("nice", "samples.png", "std 0.75"), figure("nice", "samples_std1.png", "std 1")])


def parameter_count():
    count = metrics("nice")["trainable_params"]
    return (f"{count:,} trained weights",
            "'about 2×10⁷' as 2×10⁷ to one significant figure (1.5×10⁷ to 2.5×10⁷): supported "
            "inside, not supported outside", SUPPORTED if 1.5e7 <= count < 2.5e7 else NOT_SUPPORTED,
            [])


def black_everywhere():
    count = metrics("nice")["scale_black_pixels"]
    return (f"{count} of the 784 pixels are 0 in all 60,000 training images",
            "supported if at least one pixel is 0 in every training image, not supported if none",
            SUPPORTED if count >= 1 else NOT_SUPPORTED, [figure("nice", "scale.png", "where")])


# ---------------------------------------------------------------- the claims, post by post

GS_CMD = f"python -m common.seeds {GS} --seeds 0 1 2 --results results/claims/{{}} -- --epochs 10 --is-images 1000"
NICE10 = "python -m common.seeds nice --seeds 0 1 2 --results results/claims/{} -- --epochs 10"
NOISE_CMD = NICE10.format("nice_{0}") + " --noise-kind {0}"
NOISE_CMDS = [NOISE_CMD.format(k) for k in ("positive", "centred", "gaussian")]
KAPPA_CMD = ("python -m common.seeds vae_vmf_keras --seeds 0 1 2 --results "
             "results/claims/vmf_kappa{0} -- --kappa {0}")
NOISELESS_CMD = "python -m common.seeds nice --results results/claims/noiseless -- --noise 0"
GS30_CMD = (f"python -m common.seeds {GS} --seeds 0 1 2 --results results/claims/gs_tau1_30 -- "
            "--is-images 1000 --tau-decay 1 --gradient-draws 200")


class Claim:
    """A claim of a post: where it is (post, section heading), its words (Chinese and an
    English translation), the commands of its experiment and the function that judges it,
    returning (measured, rule, verdict, figures)."""

    def __init__(self, post, section, quote, english, commands, measure):
        self.post, self.section, self.quote, self.english = post, section, quote, english
        self.commands, self.measure = commands, measure


def not_measured(what):
    def measure():
        raise Missing(what)
    return measure


CLAIMS = [
    Claim(GAUSS, "从点到面", "常规的自编码器由于没有特别的约束，因此很难回答上述问题。",
          "An ordinary autoencoder has no particular constraint, so these questions (among them "
          "whether the blank regions of the code space hold vectors of real samples) are hard to "
          "answer. The post claims no more than this; we measure the blank regions",
          ["python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_kl",
           "python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_no_kl "
           "-- --regulariser none"], ae_holes),
    Claim(VMF, "从vMF采样 › 特殊方向",
          "这样可以防止溢出，哪怕κ成千上万，也可以成功计算。……其速度是非常快的。",
          "This prevents overflow, so the computation succeeds even when κ is in the thousands "
          "or tens of thousands. … Its speed is very fast. (We test the draws' accuracy, a "
          "stronger claim than no overflow, and time the table)",
          ["python benchmarks/vmf_table.py"], kappa_thousands),
    Claim(GUMBEL, "离散情形 › 形式",
          "它越小输出结果就越接近one hot形式（但同时梯度消失就越严重）。",
          "The smaller τ, the closer the output is to one-hot, but the worse the gradient "
          "vanishes. (The first half holds by construction; the second needs the gradient's "
          "norm against τ)", [GS30_CMD], gradient_vanishes),
    Claim(GUMBEL, "离散情形 › 例子",
          "开始可以选择较大的τ（比如1），然后慢慢退火到一个接近于0的数（比如0.01），这样才能得到比较好的结果。",
          "Start from a fairly large τ (say 1) and anneal slowly to a number near 0 (say 0.01): "
          "only then are the results fairly good. (Measured at 10 of the blog's 30 epochs "
          "against τ held at 1 and at 0.1, and at the blog's 30 against τ held at 1)",
          [GS_CMD.format("gs_anneal") + " --gradient-draws 1000",
           GS_CMD.format("gs_tau1") + " --tau-decay 1",
           GS_CMD.format("gs_tau0.1") + " --tau-max 0.1 --tau-decay 1",
           f"python -m common.seeds {GS}", GS30_CMD], annealing_needed),
    Claim(GUMBEL, "离散情形 › 总结",
          "而Gumbel Softmax有概率得到非最大值位置的one hot向量，增加了随机性，会使得基于采样的训练更充分一些。",
          "Gumbel-Softmax can give one-hot vectors away from the largest entry; the added "
          "randomness makes sampling-based training somewhat more thorough (than annealing a "
          "plain softmax)", [GS_CMD.format("gs_softmax") + " --relaxation softmax"],
          gumbel_not_softmax),
    Claim(GUMBEL, "背后的故事 › 梯度方差", "主要的原因是：SF估计的方差太大。",
          "The main reason is that the score-function estimate's variance is too large (than "
          "the reparameterised one's; the post adds that this does not hold in every case)",
          [GS_CMD.format("gs_anneal") + " --gradient-draws 1000"], reinforce_variance),
    Claim(FLOW, "实验 › 模型细节", "事实上从loss看来各种噪声都差不多（包括将均匀分布换成高斯分布）。",
          "In fact, judging by the loss, all the noises are about the same ([−0.01, 0], [0, "
          "0.01], [−0.005, 0.005]), a Gaussian in place of the uniform included",
          [NICE10.format("nice_10_epochs")] + NOISE_CMDS, noise_same_loss),
    Claim(FLOW, "实验 › 模型细节",
          "而加入负噪声，会让最终生成的图片的像素值稍微偏向负区间，这样我只要用clip操作就可以去掉一部分噪声",
          "Negative noise shifts the generated images' pixels slightly towards negative values, "
          "so clipping removes part of the noise",
          [NICE10.format("nice_10_epochs")] + NOISE_CMDS, negative_noise_clips),
    Claim(FLOW, "实验 › 模型细节", "噪声的加入能够有效地防止过拟合，提高生成的图片质量。",
          "Adding the noise effectively prevents overfitting and improves the generated images",
          ["python -m common.seeds nice", NOISELESS_CMD], noise_prevents_overfitting),
    Claim(FLOW, "实验 › 参考代码", "选用(7)式作为逆向，那么生成模型更倾向于生成正数",
          "With eq. 7 as the inverse (eq. 9 as the forward pass), the generator leans to "
          "positive values",
          [NICE10.format("nice_10_epochs"), NICE10.format("nice_eq7") + " --forward eq7"],
          forward_direction),
    Claim(FLOW, "实验 › 模型细节", "在耦合之前，需要反转输入的维度，使得信息充分混合。",
          "Before each coupling the input's dimensions must be reversed, so that the information "
          "mixes fully",
          [NICE10.format("nice_10_epochs"), NICE10.format("nice_no_shuffle") + " --shuffle none"],
          shuffle_matters),
    Claim(FLOW, "flow › 尺度变换层",
          "比如MNIST图像虽然有784个像素，但有些像素不管在训练集还是测试集，都一直保持为0",
          "MNIST images have 784 pixels, yet some stay 0 in the training and the test set alike "
          "(counted here on the training set)", ["python nice.py"], black_everywhere),
    Claim(FLOW, "flow › 尺度变换层",
          "这个s向量能识别该维度的重要程度（越小越重要，越大说明这个维度越不重要，接近可以忽略）",
          "The vector s tells how important each dimension is: the larger s, the less important "
          "(nearly negligible). (We ask whether it marks the pixels black in every image, the "
          "post's example of wasted dimensions)",
          ["python nice.py", NICE10.format("nice_10_epochs")], scale_marks_black),
    Claim(FLOW, "总结", "按照上述模型，模型的参数量约为4×5×1000²=2×10⁷",
          "By the model above, the parameter count is about 4 × 5 × 1000² = 2 × 10⁷",
          ["python nice.py"], parameter_count),
    Claim(FLOW, "实验 › 参考代码", "在我的实验中，20个epoch内可以跑到最优",
          "In my experiment the best comes within 20 epochs",
          ["python -m common.seeds nice", NOISELESS_CMD], best_within_20),
    Claim(FLOW, "实验 › 参考代码", "最终的loss约为-2200。",
          "The final loss is about −2200 (the post's code of that day may have trained without "
          "noise: both settings are measured)",
          ["python -m common.seeds nice", NOISELESS_CMD], reaches_2200),
    Claim(FLOW, "实验 › 退火参数", "理想的采样方差并不一定是1，而是在1上下波动，一般比1稍小。",
          "The ideal sampling variance is not necessarily 1: it lies around 1, usually a little "
          "below (the post's 0.75 chosen by eye)", ["python -m common.seeds nice"], std_sweep),
]


# ---------------------------------------------------------------- where the code departs


def departure(what, folder, baseline):
    """A measured difference, no verdict: `folder`'s seeds against `baseline`'s."""
    def measure():
        nll = lower(arm("script's loss", baseline, "test_nll", "test_nll_stderr"),
                    arm(what, folder, "test_nll", "test_nll_stderr"), digits=2)[0]
        elbo = lower(arm("script's loss", baseline, "test_neg_elbo"),
                     arm(what, folder, "test_neg_elbo"), digits=2)[0]
        extra = ""
        if "latent_mean_sigma" in metrics(folder):
            extra = ("; mean posterior σ " + mean_sd(seed_values(folder, "latent_mean_sigma"), 4)
                     + " against " + mean_sd(seed_values(baseline, "latent_mean_sigma"), 4))
        return f"test NLL (Bernoulli decoder, nats): {nll}; −ELBO: {elbo}{extra}"
    return measure


def kappa_sweep():
    return kappa_tradeoff()[0]


# (post and section, its words and a translation, experiment, measure): measured, no verdict
DEPARTURES = [
    (f"{GAUSS} 空间正则", "事实上，这前面两项loss结合起来，就已经非常接近标准的变分自编码器了。<br>*In "
     "fact, the two losses together (eq. 2's sampled reconstruction and eq. 3's regulariser "
     "‖μ‖² + ‖σ − 1‖²) already come very close to the standard VAE.* A statement about the "
     "objective's form, which the post does not test; trained, eq. 3's posterior σ collapses",
     "python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_eq3 -- "
     "--regulariser eq3", departure("eq. 3", "claims/vae_eq3/vae_keras", VAE)),
    (f"{GAUSS} 空间正则", "将两项目标组合起来，就得到最终的变分自编码器了<br>*Combining the two "
     "objectives gives the final VAE* (eq. 5, whose reconstruction is a squared error; the "
     "script, like the blog's code, uses cross-entropy). Scored on the Bernoulli likelihood "
     "that the cross-entropy model optimises, which favours it",
     "python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_mse -- "
     "--reconstruction mse", departure("squared error", "claims/vae_mse/vae_keras", VAE)),
    (f"{VMF} vMF-VAE", "这里的重构loss以MSE为例<br>*The reconstruction loss here takes MSE as "
     "the example* (eq. 14; the blog's code uses cross-entropy). Scored on the Bernoulli "
     "likelihood, as above",
     "python -m common.seeds vae_vmf_keras --seeds 0 1 2 --results results/claims/vmf_mse -- "
     "--reconstruction mse", departure("squared error", "claims/vmf_mse/vae_vmf_keras",
                                       "vae_vmf_keras")),
    (f"{VMF} vMF-VAE", "简单起见，我们将κ设为超参数<br>*For simplicity κ is a hyperparameter* "
     "(set by hand; the post gives no value and no advice, the code uses 20): what κ does",
     "<br>".join(KAPPA_CMD.format(k) for k in (5, 10, 40, 80)), kappa_sweep),
]


def claims_table():
    lines = ["| post, section | the post says | experiment | measured | rule | verdict |",
             "|---|---|---|---|---|---|"]
    for c in CLAIMS:
        experiment = "<br>".join(f"`{x}`" for x in c.commands)
        try:
            measured, rule, verdict, figures = c.measure()
        except Missing as e:
            measured, rule, verdict, figures = f"not run yet ({e} is missing)", "—", "—", []
        shown = measured.rstrip(".") + "." + (" Figures: " + ", ".join(figures) + "."
                                              if figures else "")
        lines.append(f"| {c.post} {c.section} | {c.quote}<br>*{c.english}* | {experiment} | "
                     f"{shown} | {rule.rstrip('.')}. | {verdict} |")
    return "\n".join(lines)


def departures_table():
    lines = ["| post, section | the post says | measured (no verdict) | experiment |",
             "|---|---|---|---|"]
    for where, words, commands, measure in DEPARTURES:
        try:
            measured = measure()
        except Missing as e:
            measured = f"not run yet ({e} is missing)"
        experiment = "<br>".join(f"`{c}`" for c in commands.split("<br>"))
        lines.append(f"| {where} | {words} | {measured.rstrip('.')}. | {experiment} |")
    return "\n".join(lines)


def table():
    return (claims_table() + "\n\nNot claims, so measured without a verdict: where the "
            "scripts depart from a post's equation (as the blog's own code does), a statement "
            "the post makes about form only, and the setting the post leaves to the user.\n\n"
            + departures_table())
