"""7725, the Gaussian VAE (https://kexue.fm/archives/7725): its claim and its departures."""
from common.claims.committed import GAUSS, Claim, arm, departure, figure, metrics
from common.rules import LOWER_RULE, lower, num

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



CLAIMS = [
    Claim(GAUSS, "从点到面", "常规的自编码器由于没有特别的约束，因此很难回答上述问题。",
          "An ordinary autoencoder has no particular constraint, so these questions (among them "
          "whether the blank regions of the code space hold vectors of real samples) are hard to "
          "answer. The post claims no more than this; we measure the blank regions",
          ["python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_kl",
           "python -m common.seeds vae_keras --seeds 0 1 2 --results results/claims/vae_no_kl "
           "-- --regulariser none"], ae_holes),
]

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
]
