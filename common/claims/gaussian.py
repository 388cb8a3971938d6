"""7725, the Gaussian VAE (https://kexue.fm/archives/7725): its claim and its departures."""
import statistics

from common.claims.committed import GAUSS, Claim, arm, departure, figure, seed_values
from common.rules import LOWER_RULE, lower, mean_sd

# the default seeds 1-4 predate the latent metrics: a study of the default settings beside them
VAE, NO_KL = "claims/vae_kl/vae_keras", "claims/vae_no_kl/vae_keras"


def vae_aims():
    """Regular: fewer empty cells over the codes' central 98%, a measure free of the codes'
    scale (judged). Compact: the codes' spread (their sd, averaged over the two axes), shown
    but not judged, since the KL term holds the VAE's codes to N(0, 1) by construction and
    nothing holds the scale of the other's."""
    vae = arm("VAE", VAE, "latent_empty_cells")
    ae = arm("without KL", NO_KL, "latent_empty_cells")
    text, verdict = lower(vae, ae, "regular: empty cells of a 20×20 grid over the codes' "
                          "central 98%: ", digits=3)
    spread = {f: [statistics.mean(s) for s in seed_values(f, "latent_code_sd")]
              for f in (VAE, NO_KL)}
    sigma = lambda f: mean_sd(seed_values(f, "latent_mean_sigma"), 5)  # noqa: E731
    return (f"{text}. Compact, by construction (the KL term holds the VAE's codes to N(0, 1), "
            f"nothing holds the scale of the other's), so shown, not judged: the codes' sd, mean "
            f"of the two axes, {mean_sd(spread[VAE], 2)} for the VAE, {mean_sd(spread[NO_KL], 2)} "
            f"without KL. The arm without KL is the script with the KL term left out: it still "
            f"samples z, with a mean posterior σ of {sigma(NO_KL)} (the VAE's {sigma(VAE)})",
            f"the VAE's codes are more regular (fewer empty cells): {LOWER_RULE}", verdict,
            [figure(NO_KL, "latent_scatter.png", "codes without KL"),
             figure(VAE, "latent_scatter.png", "codes of the VAE"),
             figure(NO_KL, "manifold.png", "manifold without KL")])


CLAIMS = [
    Claim(GAUSS, "从点到面", "常规的自编码器由于没有特别的约束，因此很难回答上述问题。于是，变分自编码器出来了，"
          "从编码角度来看，它的目的是：1、让编码空间更规整一些；2、让编码向量更紧凑一些。",
          "An ordinary autoencoder has no particular constraint, so these questions (among them "
          "whether the blank regions of the code space hold vectors of real samples) are hard to "
          "answer. So the VAE came out; from the codes' point of view its aims are: 1. to make "
          "the code space more regular; 2. to make the code vectors more compact. (We judge the "
          "first on the trained VAE's codes against the same model's without the KL term; the "
          "second holds by construction)",
          ["python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_kl",
           "python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_no_kl "
           "-- --regulariser none"], vae_aims),
]

# (post and section, its words and a translation, experiment, measure): measured, no verdict
DEPARTURES = [
    (f"{GAUSS} 空间正则", "事实上，这前面两项loss结合起来，就已经非常接近标准的变分自编码器了。<br>*In "
     "fact, the two losses together (eq. 2's sampled reconstruction and eq. 3's regulariser "
     "‖μ‖² + ‖σ − 1‖²) already come very close to the standard VAE.* A statement about the "
     "objective's form, which the post does not test; trained, eq. 3's posterior σ collapses, "
     "and for so narrow a posterior the importance-sampled NLL, an upper bound, may be far "
     "from the likelihood itself",
     "python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_eq3 -- "
     "--regulariser eq3", departure("eq. 3", "claims/vae_eq3/vae_keras", VAE)),
    (f"{GAUSS} 空间正则", "将两项目标组合起来，就得到最终的变分自编码器了<br>*Combining the two "
     "objectives gives the final VAE* (eq. 5, whose reconstruction is a squared error; the "
     "script, like the blog's code, uses cross-entropy). Scored on the Bernoulli likelihood "
     "that the cross-entropy model optimises, which favours it",
     "python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_mse -- "
     "--reconstruction mse", departure("squared error", "claims/vae_mse/vae_keras", VAE)),
]
