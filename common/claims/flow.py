"""5776, NICE (https://kexue.fm/archives/5776): its claims."""
import functools
import math
import statistics

from common.claims.committed import (
    FLOW, Claim, arm, best_within, column, figure, history, images, metrics, seed_runs,
    seed_values)
from common.rules import (
    INCONCLUSIVE, LOWER_RULE, MIN_SEEDS, NOT_SUPPORTED, PARTS_RULE, SUPPORTED, Arm, Missing, apart, combine,
    each_seed, images_variance, judged, lower, mean_sd, num, paired, paired_parts, pairing, same,
    t_quantile)

TEN = "claims/nice_10_epochs/nice"  # the blog's settings, 10 epochs
NOISE_RUNS = {"[0, 0.01]": "claims/nice_positive/nice", "[−0.005, 0.005]":
              "claims/nice_centred/nice", "Gaussian": "claims/nice_gaussian/nice"}
BLOG_NOISE = "[−0.01, 0]"
CHOSEN = ("the epoch chosen on the test set, as the original script's checkpoint does, which "
          "flatters it")
EQUIVALENT = 0.01  # "about the same": within 1% of the reference's dequantised NLL, in nats


def ten_epochs():
    """Why the NICE rows that compare settings train 10 of the blog's 30 epochs, and what that
    leaves out, from the runs: an epoch's time here, and where the blog's settings stand after
    10 epochs against their best in 30."""
    seconds = statistics.mean(seed_values(TEN, "seconds_per_epoch"))
    return (f"The NICE rows that compare settings train 10 of the blog's 30 epochs, for CPU "
            f"time: an epoch takes about {seconds:.0f} s here (the 10-epoch seeds' mean), so "
            f"each arm's 3 seeds at 30 epochs would take about {seconds * 90 / 3600:.1f} h. "
            f"After 10 epochs the blog's settings reach a best test loss of "
            f"{mean_sd(best_within('nice', 10))}, against {mean_sd(best_within('nice', 30))} "
            "after 30 (the default study).")


def dequantised(label, folder):
    """The plain dequantised bound of a NICE study, bins above each pixel (every run has it),
    with the test images' standard error where every seed stores it."""
    try:
        return arm(label, folder, "test_dequantised_nll", "test_dequantised_nll_image_se")
    except Missing:  # seeds from before the images' error: the seeds' spread alone
        return arm(label, folder, "test_dequantised_nll")


# where each pixel's bin of width 1/256 lies: [x − 1/256, x], centred on x, [x, x + 1/256]
PLACEMENTS = ("below", "centred", "above")


def loss_arm(label, folder):
    """The blog's metric, each seed's best test loss in 10 epochs, with each test image's
    value at the kept weights where the seeds store them."""
    folders = seed_runs(folder, MIN_SEEDS)
    return Arm(label, best_within(folder, 10),
               per_image=column(images(folders), "neg_log_density", folders))


def iw_arms(label, folder):
    """{placement: Arm} of the importance-weighted bound (test images' standard error beside
    each seed's value, and each image's bound where every seed stores it), or None where a
    seed predates the bound; and the largest Monte Carlo error."""
    folders = seed_runs(folder, MIN_SEEDS)
    runs = [metrics(f) for f in folders]
    if any("test_iw_nll_by_bins" not in m for m in runs):
        return None, None
    bins = {p: [m["test_iw_nll_by_bins"][p] for m in runs] for p in PLACEMENTS}
    tables = images(folders)
    return ({p: Arm(label, [b["nll"] for b in v], [b["image_se"] for b in v],
                    column(tables, f"iw_nll_{p}", folders)) for p, v in bins.items()},
            max(b["mc_se"] for v in bins.values() for b in v))


def images_error(ref, others):
    """How the test images' sampling enters the differences against `ref` (`pairing`) and, for
    those paired, each difference's standard error over the images and how closely the runs'
    per-image values go together."""
    text = pairing([(ref, o) for o in others])
    done = [o for o in others if paired(ref, o)]
    if not done:
        return text
    import numpy as np

    se = [math.sqrt(images_variance(ref, o)) for o in done]
    whole = [math.sqrt(paired_parts(ref, o)[0]) for o in done]
    r = np.corrcoef(np.stack([v for a in [ref, *done] for v in a.per_image]).astype(np.float64))
    r = r[np.triu_indices(len(r), 1)]
    unpaired = ""
    if ref.image_se:
        pairs = [math.hypot(ref.image_se, o.image_se) for o in done]
        unpaired = f"; unpaired {num(min(pairs))} to {num(max(pairs))}"
    size = f"{ref.per_image[0].size:,}"
    where = (f"paired over the same {size} images" if len(done) == len(others)
             else f"{text}; the paired ones over {size} images")
    return (f"{where}: a difference's standard error over them {num(min(se), 2)} to "
            f"{num(max(se), 2)} nats once the seed-by-image variation, which the seeds' spread "
            f"holds, is taken out ({num(min(whole), 2)} to {num(max(whole), 2)} with it"
            f"{unpaired}), any two runs' per-image values correlating at r = {min(r):.3f} to "
            f"{max(r):.3f}")


def noise_same_loss():
    kinds = {BLOG_NOISE: TEN, **NOISE_RUNS}
    loss = {k: loss_arm(k, f) for k, f in kinds.items()}
    iw = {k: iw_arms(k, f) for k, f in kinds.items()}
    if iw[BLOG_NOISE][0] is None:
        raise Missing(f"the importance-weighted bound of every seed of {TEN}")
    ref = iw[BLOG_NOISE][0]
    margin = EQUIVALENT * ref["below"].mean
    parts, bounds, old = [], [], []
    old_ref = dequantised(BLOG_NOISE, TEN)
    for k in NOISE_RUNS:
        parts.append(same(loss[BLOG_NOISE], loss[k], margin, "loss: "))
        if iw[k][0] is None:  # seeds from before the IW bound: its one placement, bins above
            bound = dequantised(k, kinds[k])
            parts.append(same(old_ref, bound, margin, "bound, bins above only: "))
            old.append(f"{k} {num(bound.mean)} against {num(old_ref.mean)}")
            continue
        for p in PLACEMENTS:
            parts.append(same(ref[p], iw[k][0][p], margin, f"bound, bins {p}: "))
    for p in PLACEMENTS:
        bounds.append(f"bins {p}: " + ", ".join(str(iw[k][0][p]) for k in kinds if iw[k][0]))
    text, verdict = judged(parts)
    mc = max(e for _, e in iw.values() if e is not None)
    pending = (f"; kinds whose seeds predate the importance-weighted bound are held to the "
               f"earlier bound with bins above each pixel ({'; '.join(old)})" if old else "")
    return (f"10 epochs, 3 seeds a kind; the blog's loss (best test loss: {CHOSEN}): "
            + ", ".join(map(str, loss.values()))
            + "; the importance-weighted bound (K = 32 draws, nats), one for each placement of "
              "the pixels' bins, since each placement is its own discretisation: "
            + "; ".join(bounds)
            + f" (Monte Carlo error at most {num(mc, 3)} nats){pending}. The test images' "
              f"error on the loss: {images_error(loss[BLOG_NOISE], [loss[k] for k in NOISE_RUNS])}"
              f"; on the bound with bins below: "
              f"{images_error(ref['below'], [iw[k][0]['below'] for k in NOISE_RUNS if iw[k][0]])}"
              f". Differences against "
              f"{BLOG_NOISE}: {text}. The blog's loss scores the density at the pixel values "
              "themselves, where a zero-mean noise is centred and a one-sided one is not",
            f"'about the same' as practical equivalence within ±{num(margin)} nats (1% of "
            f"{BLOG_NOISE}'s bound, {num(margin / (784 * math.log(2)), 3)} bits/dim) on the loss "
            "and on the bound at every placement, each kind against the blog's: each part "
            "supported if its 95% interval lies inside the band, not supported if wholly "
            f"outside, inconclusive if it crosses an edge; {PARTS_RULE}",
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
            f"other kind: {LOWER_RULE}; {PARTS_RULE}", verdict,
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
            f"eq. 9's samples have more pixels above 1 and fewer below 0: {LOWER_RULE}, on "
            f"each; {PARTS_RULE}", verdict, [figure(EQ7, "samples.png", "eq. 7 forward")])


NO_SHUFFLE = "claims/nice_no_shuffle/nice"


def shuffle_matters():
    studies = (("reversed", TEN), ("not shuffled", NO_SHUFFLE))
    pairs = [[loss_arm(n, f) for n, f in studies]]
    parts = [lower(*pairs[0], "loss: ")]
    iw = [iw_arms(n, f)[0] for n, f in studies]
    if all(iw):
        bound = "the importance-weighted bound (K = 32) at each placement of the bins"
        for p in PLACEMENTS:
            pairs.append([a[p] for a in iw])
            parts.append(lower(*pairs[-1], f"bound, bins {p}: "))
    else:
        pairs.append([dequantised(n, f) for n, f in studies])
        bound = ("the plain dequantised bound with bins above (not every not-shuffled seed has "
                 "the importance-weighted one" + ("" if pairs[-1][1].image_se else
                                                 ", and store no error over the test images: "
                                                 "only the reversed seeds' counts") + ")")
        parts.append(lower(*pairs[-1], "bound: "))
    text, verdict = judged(parts)
    return (f"10 epochs, the blog's loss (best test loss: {CHOSEN}) and {bound}: {text} (the test images' "
            f"error {pairing(pairs)})",
            f"the reversed flow is lower on the blog's loss and the dequantised bound: "
            f"{LOWER_RULE}, on each; {PARTS_RULE}", verdict,
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
            f"inconclusive if they disagree, for each setting; {PARTS_RULE}",
            combine([v for _, v in parts]), [figure("nice", "loss_seeds.png", "the seeds' curves")])


BLOG_LOSS, ABOUT = -2200.0, 0.02


def reaches_2200():
    parts, final = [], {}
    for label, folder in (("with the blog's noise", "nice"), ("without noise", NOISELESS)):
        best = Arm(label, best_within(folder, 20))
        final[label] = [float(history(f)["val_loss"][19]) for f in seed_runs(folder, MIN_SEEDS)]
        h = t_quantile(best.n - 1) * best.sd / math.sqrt(best.n)
        lo, hi = best.mean - h, best.mean + h
        band = (BLOG_LOSS * (1 + ABOUT), BLOG_LOSS * (1 - ABOUT))
        verdict = (SUPPORTED if band[0] <= lo and hi <= band[1] else
                   NOT_SUPPORTED if hi < band[0] or lo > band[1] else INCONCLUSIVE)
        parts.append((f"{best}, 95% interval [{num(lo)}, {num(hi)}]", verdict))
    text, verdict = judged(parts)
    last = "; ".join(f"{label} {mean_sd(v)}" for label, v in final.items())
    return (f"best test loss within 20 epochs ({CHOSEN}): {text}. We read the post's 最终的loss "
            f"(final loss) as that best figure, since the post's code keeps the best epoch's "
            f"weights; the test loss after epoch 20 itself: {last}",
            f"'about −2200' as within 2% ([{num(BLOG_LOSS * 1.02)}, {num(BLOG_LOSS * 0.98)}]): "
            "supported if the 95% interval of the seeds' mean lies inside, not supported if "
            f"wholly outside, inconclusive otherwise, for each setting; {PARTS_RULE}", verdict,
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
            f"the noisy default study's {noisy}",
            "every noiseless seed ends further above its best than every noisy seed (by chance: "
            "1 in 20): supported; the reverse order: not supported; overlapping: inconclusive",
            apart(rise["with noise"], rise["without"]),
            [figure(NOISELESS, "loss_seeds.png", "noiseless curves"),
             figure("nice", "loss_seeds.png", "noisy curves")])


NOISELESS_20 = "claims/noiseless_20/nice"
NOISELESS_20_CMD = ("python -m common.seeds nice --seeds 0 1 2 --results results/claims/noiseless_20 "
                    "-- --noise 0 --epochs 20")


def noise_improves_samples():
    """The images half of the overfitting sentence: the Fréchet distance of the samples of the
    noisy default study against that of the noiseless seeds, at the post's std 0.75 and at 1.

    The noiseless arm trains 20 epochs, not 30: NICE keeps the epoch with the best test loss,
    every seed of the 30-epoch noiseless study had it by epoch 20, and nothing in training
    depends on the epoch count, so a 20-epoch run of a seed keeps the epoch its 30-epoch run
    kept (the row prints both runs' best epochs and losses to show it). The noisy seeds'
    best epochs are under 20 too."""
    noisy = [metrics(f) for f in seed_runs("nice", MIN_SEEDS)]
    clean = [metrics(f) for f in seed_runs(NOISELESS_20, MIN_SEEDS)]
    thirty = [metrics(f) for f in seed_runs(NOISELESS, MIN_SEEDS)]
    parts = []
    for std in ("0.75", "1"):
        fd = lambda runs, label: Arm(label, [m["sample_fd_by_std"][std] for m in runs])  # noqa: E731
        parts.append(lower(fd(noisy, "with noise"), fd(clean, "without"),
                           f"Fréchet distance at std {std}: "))
    text, verdict = judged(parts)
    epochs = lambda runs: ", ".join(str(m["best_epoch"]) for m in runs)  # noqa: E731
    losses = lambda runs: ", ".join(num(m["best_val_loss"]) for m in runs)  # noqa: E731
    return (f"Fréchet distance in pixel space between 10,000 clipped samples and the 10,000 test "
            f"images, the noisy default study (30 epochs) against the noiseless seeds (20 "
            f"epochs; best epochs {epochs(clean)}, best test losses {losses(clean)}, where the "
            f"30-epoch noiseless seeds had {epochs(thirty)} and {losses(thirty)}): {text}",
            f"the noisy model's samples are closer to the test images at std 0.75 and at 1: "
            f"{LOWER_RULE}, at each std; {PARTS_RULE}", verdict,
            [figure(NOISELESS_20, "samples.png", "noiseless samples"),
             figure("nice", "samples.png", "noisy samples")])


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
            f"two parts: each seed's best std lies in [{lo}, {hi}) (a little below 1, not below "
            "0.7): supported if every seed's does, not supported if none does, inconclusive if "
            f"the seeds disagree; and the post's 0.75 is closer than 1: {LOWER_RULE}; "
            f"{PARTS_RULE}", verdict,
            [figure("nice", "samples.png", "std 0.75"), figure("nice", "samples_std1.png", "std 1")])


def parameter_count():
    count = metrics("nice")["trainable_params"]
    return (f"{count:,} trained weights",
            "'about 2×10⁷' as 2×10⁷ to one significant figure (1.5×10⁷ to 2.5×10⁷): supported "
            "inside, not supported outside", SUPPORTED if 1.5e7 <= count < 2.5e7 else NOT_SUPPORTED,
            [])


def always_black(images):
    """The pixels that are 0 in every one of `images` (n, 28, 28), as a boolean (28, 28) mask."""
    return (images == 0).all(axis=0)


@functools.lru_cache(maxsize=1)
def mnist():
    from common.data import load_mnist

    return load_mnist()


def black_everywhere(load=mnist):
    """Counted on MNIST itself (`load`, common.data's, read once), in each set and in both; the
    training set's count is also nice.py's `scale_black_pixels`."""
    script_count = metrics("nice")["scale_black_pixels"]  # Missing before the data is read
    (x_train, _), (x_test, _) = load()
    train, test = always_black(x_train), always_black(x_test)
    both = int((train & test).sum())
    return (f"of the 784 pixels, {int(train.sum())} are 0 in all {len(x_train):,} training "
            f"images, {int(test.sum())} in all {len(x_test):,} test images, {both} in both "
            f"(counted on the data; nice.py's scale_black_pixels: {script_count})",
            "supported if at least one pixel is 0 in every image of both sets, not supported if "
            "none", SUPPORTED if both >= 1 else NOT_SUPPORTED,
            [figure("nice", "scale.png", "where")])


NICE10 = "python -m common.seeds nice --seeds 0 1 2 --results results/claims/{} -- --epochs 10"
NOISE_CMD = NICE10.format("nice_{0}") + " --noise-kind {0}"
NOISE_CMDS = [NOISE_CMD.format(k) for k in ("positive", "centred", "gaussian")]
NOISELESS_CMD = "python -m common.seeds nice --results results/claims/noiseless -- --noise 0"


CLAIMS = [
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
          "Adding the noise effectively prevents overfitting and improves the generated images "
          "(this row: the overfitting half; the next row: the images)",
          ["python -m common.seeds nice", NOISELESS_CMD], noise_prevents_overfitting),
    Claim(FLOW, "实验 › 模型细节", "噪声的加入能够有效地防止过拟合，提高生成的图片质量。",
          "Adding the noise effectively prevents overfitting and improves the generated images "
          "(this row: the images; the row above: overfitting)",
          ["python -m common.seeds nice", NOISELESS_20_CMD], noise_improves_samples),
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
          "MNIST images have 784 pixels, yet some stay 0 in the training and the test set alike",
          ["python nice.py"], black_everywhere),
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
