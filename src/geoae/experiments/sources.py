"""What each source of the paper states, claim by claim, and what is our reading: citations as data.

Three texts are known of *Processing Simple Geometric Attributes with Autoencoders* (Newson, Almansa,
Gousseau, Ladjal, JMIV 2020), and they are not equal (the project's SOURCES.md lists what is known of each):

- ``JMIV abstract``: the journal abstract, its sentences only. The body of the JMIV paper (its sections,
  figures, tables, its position set-up) was never available to us, so no JMIV section, figure or equation
  number is ever cited.
- ``ICLR 2018 §…``: the earlier version, "Taking Apart Autoencoders: How do They Encode Geometric Shapes?"
  (ICLR 2018 submission): main text §1–§3.3, Table 1, Props 1–2, Eqs 1–10 and the figure captions, not its
  appendices. It has no position (Dirac) part.
- ``released code``: the authors' Keras repository and its example model (disk part only).

Per claim, ``CLAIMS`` holds the source tags (exactly as SOURCES.md writes them), what the source says (our
paraphrase; text in double quotes is a quote, and only the quotes SOURCES.md gives are used) and our readings:
every choice no source makes (set-up, measure, threshold). ``RULES`` holds each verdict rule's history: the
commit where the rule now in force was set, and whether it was revised after results had been seen.

The experiments take their ``PAPER`` text from here (``PAPER = sources.statement("D6")``), the runner copies
``record_fields`` into each results file, and the report prints them: a sentence about the paper typed
anywhere else is a second copy that drifts.

**Adding or changing a rule.** Give its claim a new ``RuleHistory``: ``set_at=""`` while the rule is not yet
committed (the report then names the commit the results were produced by), and the commit's short hash once it
is; fill ``revised_after_results`` (why, and which results had been seen) whenever a rule or a threshold is
changed after numbers of that claim were seen. Add a reading to the claim's ``readings`` for each new choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The three kinds of source tag (SOURCES.md). An ICLR 2018 tag names a part of its main text: a section (§),
# a proposition, equation(s), Table 1 or a figure (caption). A released-code tag may name a function.
TAG_PATTERN = re.compile(r"JMIV abstract|released code( `\w+`)?|ICLR 2018 (§\d+(\.\d+)*|Prop\. [12]|Table 1"
                         r"|Eq\. \d+|Eqs \d+–\d+|Fig\. \d+|Figs \d+–\d+)")
BEYOND = "Beyond the paper"


@dataclass(frozen=True)
class Source:
    """What the sources state about one claim: ``tags`` (SOURCES.md's), ``says`` (our paraphrase, quotes in
    double quotes), ``readings`` (each choice of ours that no source makes)."""

    tags: tuple[str, ...]
    says: str
    readings: tuple[str, ...]


@dataclass(frozen=True)
class RuleHistory:
    """Where the verdict rule now in force comes from. ``set_at``: the commit that set it ('' = not committed
    yet: the results' own commit); ``revised_after_results``: '' if it was written before any result of its
    claim was seen, else why it was changed and which results had been seen."""

    set_at: str
    revised_after_results: str = ""


CLAIMS: dict[str, Source] = {
    "D1": Source(
        ("JMIV abstract", "ICLR 2018 §3.2", "ICLR 2018 Fig. 2"),
        "an autoencoder with a scalar latent space projects centred disks to a one-dimensional code and back "
        "(the abstract and ICLR 2018 §3.2; reconstructions in ICLR 2018 Fig. 2).",
        ("the set-up: each claim runs under both sources' recipes (`iclr2018`: ICLR 2018 §3.1 and Table 1; "
         "`released`: the released code), each completed where its source is silent (geoae.recipes lists every "
         "such choice: training-set size and budget of `iclr2018`, its kept weights, …)",
         "the test set: evenly spaced radii over [0, R] (`released`: its own 300 radii), the comparison range "
         "r ≤ 30",
         "the error thresholds of the verdict (per-pixel MSE), and comparing with the authors' released model "
         "on the same radii")),
    "D2": Source(
        ("ICLR 2018 §3.2.1", "ICLR 2018 §3.3", "ICLR 2018 Fig. 2", "released code `write_manifold`",
         "JMIV abstract"),
        "the encoding \"can be done\" by integrating over the disk, and the code z \"seems to represent the area "
        "and not the radius\" (ICLR 2018, from a plot of r against z); the released code plots z against the "
        "summed pixels; the abstract says \"we describe … the encoding process\". The sources state a monotone, "
        "area-like code, no measure of it.",
        ("the claim's test: z monotone in r (Spearman) and area-like",
         "every measure beyond \"monotone, area-like\": the growth exponent of z(r), the uniformity of ∂z/∂x on "
         "the disk, the cosine of ∂z/∂x between radii, and their thresholds",
         "R² of z against the area and against the radius")),
    "D3": Source(
        ("ICLR 2018 Prop. 1", "ICLR 2018 Eq. 4", "ICLR 2018 §3.2.1"),
        "a decoder without biases is positively homogeneous (Prop. 1); \"in all our experiments\" the bias-free "
        "network used one sign of the code (§3.2.1). The separable form y(t, r) = h(r) f(t) (ICLR 2018 Eq. 5) is "
        "an observation (ICLR 2018 Fig. 3), not a consequence of Prop. 1.",
        ("the homogeneity error at λ ∈ {0.5, 2, 10}, computed in float64 (an implementation check)",
         "the verdict on the empirical part: the share of test codes of one sign, and its partly threshold",
         "the rank-1 residual of the output matrix as the test of the separable form")),
    "D4": Source(
        ("ICLR 2018 Prop. 2", "ICLR 2018 Eqs 6–10", "ICLR 2018 Fig. 7", "JMIV abstract"),
        "the optimal bias-free profile maximises the energy E(f) (Prop. 2); the learned profile is \"a very "
        "close match\" to the numerical solution (Fig. 7 caption; the comparison itself is in ICLR 2018's "
        "appendix A, which we have not read); the abstract: \"a closed-form solution … the network indeed finds "
        "this solution\".",
        ("the Airy closed form, derived by us from Prop. 2 (ICLR 2018 only promises a closed form in its "
         "appendix A)",
         "the discrete optimum (rank-1 SVD of the training images) as the exact reference of a finite data set",
         "the distances (relative L2 up to scale), the loss ratio, the correlation of z with ĥ, and their "
         "thresholds")),
    "D5": Source(
        ("ICLR 2018 §3.2.2", "ICLR 2018 §3.3"),
        "biases shift the hidden images \"such that a cut-off can be carried out\"; without biases the outputs "
        "are h(r)·f (scaled copies of one image).",
        ("\"sharp\": our edge step (mean output just inside the edge minus just outside)",
         "the MSE ratio without / with biases and its thresholds",
         "the bias-free discrete optimum as the floor of any bias-free network")),
    "D6": Source(
        ("ICLR 2018 §3.2.3", "ICLR 2018 Figs 4–5"),
        "with radii 11 to 18 (of 32) removed from training, \"the network is unable to recreate the input "
        "disks\" of the hole; and it \"is not able to extrapolate further than the largest observed radius\".",
        ("the largest training radius of the extrapolation case (R = 24)",
         "the control: the same network trained on all radii, compared at the same radii",
         "the failure thresholds (MSE against the control, radius error of the outputs)",
         "the data and network of each recipe (`iclr2018`: 64 × 64 binary disks; `released`: 63 × 63 blurred "
         "8-bit disks, keras63)")),
    "D7": Source(
        ("ICLR 2018 §3.2.4", "ICLR 2018 Fig. 6", "JMIV abstract"),
        "type 1 (locality) is to be avoided with holes in the data; with type 2 (ℓ2 on all weights) \"the code "
        "z increases in amplitude during the training\"; type 3 (ℓ2 on the encoder) \"works particularly well … "
        "the resulting manifold is continuous\"; the abstract names \"the best regularization approaches\".",
        ("that the same ranking holds in the JMIV version",
         "the λ values (no source gives them; the released code defaults to 1.0): chosen by our search",
         "per-seed differences paired with no regulariser (same seed and data) and their bootstrap intervals, "
         "in place of thresholds",
         "how \"z grows\" is measured (max |z| of the training batch, end of training against N/8) and why it "
         "grows",
         "the λ search: the largest λ whose validation and training MSE stay within 1.25× of no regulariser's, "
         "averaged over 3 seeds")),
    "D6F": Source(
        ("ICLR 2018 §3.1", "ICLR 2018 Table 1", "released code"),
        "no source compares set-ups: ICLR 2018 states 64 × 64 binary disks, leaky ReLU 0.2, Adam lr 0.001 and "
        "batch 300; the released code trains 63 × 63 blurred 8-bit disks with keras63, leaky ReLU 0.05, Adam lr "
        "0.01, batch 64, and keeps a best-batch snapshot.",
        ("the items varied and their order (one at a time, from the released recipe toward ICLR 2018's)",
         "3 seeds per variant; a factor \"decides\" if its variant's outcome in the hole is the opposite of the "
         "base recipe's")),
    "P1": Source(
        ("JMIV abstract",),
        "the abstract speaks of \"a handcrafted filter that achieves encoding perfectly\".",
        ("the filter itself: our ramp construction (mass and position channels, stride-2 two-tap kernels)",
         "the signal length n = 64, 1-D and 2-D, the code size",
         "\"perfectly\": largest relative error below 1e-6 over every position")),
    "P2": Source(
        ("JMIV abstract",),
        "the abstract: \"the network naturally finds this filter during training\". The JMIV body, and so its "
        "position set-up, was never available.",
        ("the whole set-up: architecture and widths, n, d, biases, learning rate, batches",
         "what \"finds\" means: R² and monotonicity of z(p), the gradient filter against the ramp",
         "the thresholds of a seed that \"finds the ramp\"")),
    "P3": Source(
        ("JMIV abstract",),
        "the abstract: \"the decoding can be achieved if the dataset is sampled in an appropriate manner\". The "
        "JMIV body, and so its position set-up, was never available.",
        ("what \"appropriate\" means: the sampling schemes (random, stride, hole, quadrant, blurred Diracs)",
         "that held-out positions are meant (training and scoring every position would test memorisation)",
         "the set-up (the network of P2) and the accuracy thresholds",
         "a second reading: a decoder trained behind the exact hand-crafted encoder (decoding apart from "
         "encoding)")),
    "P3D": Source(
        ("JMIV abstract",),
        "the abstract: \"the decoding can be achieved if the dataset is sampled in an appropriate manner\". It does "
        "not say whether the encoder is learned too; the JMIV body was never available.",
        ("a second reading of P3: the decoder alone, behind the exact hand-crafted position encoder",
         "the sampling schemes, the set-up and the thresholds of P3")),
    "X1": Source(
        (),
        "our prediction: ICLR 2018 Prop. 2 carried to dimension k = 1. None of the sources known to us states "
        "it (whether the JMIV body treats it is unknown).",
        ("the prediction itself (the cosine arch), the set-up and the thresholds",)),
    "X2": Source(
        (),
        "our prediction: ICLR 2018 Prop. 2 carried to non-uniform radius densities. None of the sources known to "
        "us states it (whether the JMIV body treats it is unknown).",
        ("the prediction itself (the eigen-solver's profile), the densities, the set-up and the thresholds",)),
    "X3": Source(
        ("ICLR 2018 §3.3",),
        "the authors \"experimented with other simple geometric objects such as squares and ellipses, with "
        "similar results in an optimal code size\"; what the bias-free decoder draws for them is our prediction, "
        "stated by no source.",
        ("the prediction itself (Airy of the shape's gauge), the ellipses' aspect, the set-up and the "
         "thresholds",)),
    "X4": Source(
        (),
        "our prediction: ICLR 2018 Prop. 2 carried to balls in dimension k = 3. None of the sources known to us "
        "states it (whether the JMIV body treats it is unknown).",
        ("the closed form in k = 3 (derived by us), the cost estimate of a 3-D run",)),
}

# Our reading in a few words, for REPRODUCE.md's column (after SOURCES.md's "what is our reading" column).
READING_SHORT: dict[str, str] = {
    "D1": "the set-up, the error thresholds",
    "D2": "every measure beyond \"monotone, area-like\", thresholds",
    "D3": "the measures, the one-sign threshold",
    "D4": "the Airy closed form, the thresholds",
    "D5": "\"sharp\", the ratio thresholds",
    "D6": "R of the extrapolation case, the failure thresholds",
    "D6F": "the items varied, one at a time; what \"decides\" means",
    "D7": "same ranking in JMIV, the λ values, paired intervals, how \"z grows\" is measured",
    "P1": "the filter itself, n, 1-D/2-D, d",
    "P2": "the whole set-up, what \"finds\" means",
    "P3": "what \"appropriate\" means, held-out positions, the set-up",
    "P3D": "decoding read for the decoder alone; P3's schemes and thresholds",
    "X1": "the whole prediction and set-up",
    "X2": "the whole prediction and set-up",
    "X3": "the whole prediction and set-up",
    "X4": "the whole prediction",
}

# The quick-profile results first published in REPRODUCE.md (commit 72fd1ac) preceded the rewrite of 7dd28be.
_SEEN = "after the quick-profile results of 72fd1ac (REPRODUCE.md) had been published"
RULES: dict[str, RuleHistory] = {
    "D1": RuleHistory("aee701a"),  # 7dd28be only dropped a parenthesis from its wording; thresholds unchanged
    "D2": RuleHistory("10e154a", "revised after results twice: at 7dd28be (after the quick results of 72fd1ac) a "
                                 "growth exponent in [1.5, 2.5] and a gradient uniformity ≥ 0.9 were added; at "
                                 "10e154a, after a review measured the authors' own model failing that rule "
                                 "(uniformity 0.69, exponent 1.63), the test is back to what the sources state: "
                                 "monotone and area-like (the exponent's interval above 1.5); exponent, uniformity "
                                 "and the cross-radius cosine are reported as measures"),
    "D3": RuleHistory("7dd28be", f"rewritten {_SEEN}: the earlier rule (aee701a) judged homogeneity and rank 1; "
                                 "the verdict now rests on the sign of the codes"),
    "D4": RuleHistory("7dd28be", f"rewritten {_SEEN}: the earlier rule (59f46bb) bounded the profile's distance to "
                                 "Airy by 0.05; it now asks the distance to the discrete optimum < 0.03 as well"),
    "D5": RuleHistory("aee701a"),
    "D6": RuleHistory("081cdf2", f"rewritten {_SEEN} at 7dd28be: the earlier rule (59f46bb) compared MSE ratios "
                                 "inside and outside the unseen radii; the new one needs MSE ≥ 3× the control and a "
                                 "radius error ≥ 1 px, a threshold set after a radius error of 0.54 px had been "
                                 "measured. At 081cdf2, after a review found the opposite outcome under the released "
                                 "recipe, the rule is applied per recipe (thresholds unchanged; the binary/area "
                                 "split of one recipe dropped)"),
    "D6F": RuleHistory("081cdf2"),
    "D7": RuleHistory("081cdf2", f"rewritten twice after results: at 7dd28be ({_SEEN}) the hole-MSE ratios of the "
                                 "earlier rule (59f46bb) became \"gap closed\" fractions (λ grids changed at "
                                 "4a94fad); at 081cdf2, after a review showed the gap to be mostly seed noise, each "
                                 "sub-claim is decided on paired per-seed differences with bootstrap intervals "
                                 "(inconclusive when they contain 0), |z| growth on the training trajectory, and "
                                 "the λ search over 3 seeds"),
    "P1": RuleHistory("113f582"),
    "P2": RuleHistory("696d8b2", "rewritten after the first results (113f582: not reproduced at the quick "
                                 "budget): primary set-up, diagnostics and the partly clause"),
    "P3": RuleHistory("696d8b2", "its reading was fixed after results: at 72fd1ac P3 was published as confirmed "
                                 "from accuracies on every position (trained on all of them); 696d8b2 scores "
                                 "held-out positions only"),
    "P3D": RuleHistory("", "its rule is P3's (fixed after results, 696d8b2), applied as a verdict of its own to P3's "
                           "frozen-encoder controls after their results (0.975 held-out in 1-D) had been seen"),
    "X1": RuleHistory("7a95993"),  # written before any X run was trained (beyond.py)
    "X2": RuleHistory("7a95993"),
    "X3": RuleHistory("7a95993"),
    "X4": RuleHistory("7a95993"),
}


def _claim(claim_id: str) -> Source:
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise KeyError(f"no sources recorded for claim {claim_id!r}; known: {', '.join(CLAIMS)}") from None


def statement(claim_id: str) -> str:
    """One line: the source tags, then what they say ('Beyond the paper: …' for a claim no source makes)."""
    src = _claim(claim_id)
    if claim_id.startswith("X"):
        return f"{BEYOND}" + (f" ({'; '.join(src.tags)})" if src.tags else "") + f": {src.says}"
    return f"{'; '.join(src.tags)}: {src.says}"


def readings(claim_id: str) -> list[str]:
    """Our readings of the claim: every choice that no source makes."""
    return list(_claim(claim_id).readings)


def rule_history(claim_id: str) -> dict:
    """{'set_at': commit ('' = the results' own commit), 'revised_after_results': '' or why}."""
    h = RULES[claim_id] if claim_id in RULES else RuleHistory("")
    return {"set_at": h.set_at, "revised_after_results": h.revised_after_results}


def record_fields(claim_id: str) -> dict:
    """The fields the runner writes into a claim's results file: ``paper`` (the one-line statement),
    ``source`` (tags and what they say), ``reading`` (list), ``reading_short`` and ``rule_history``."""
    src = _claim(claim_id)
    return {"paper": statement(claim_id), "source": {"tags": list(src.tags), "says": src.says},
            "reading": readings(claim_id), "reading_short": READING_SHORT.get(claim_id, ""),
            "rule_history": rule_history(claim_id)}


def rule_label(history: dict | None, commit: str | None = None) -> str:
    """'Rule (set at commit X)' or 'Rule (revised after results, commit X: why)'; ``commit``: the results' commit,
    named when the rule's own commit is not recorded yet."""
    history = history or {}
    at = history.get("set_at") or (f"{commit[:7]}, the results' commit" if commit else "")
    where = f"commit {at}" if at else "commit not recorded"
    why = history.get("revised_after_results") or ""
    return f"Rule (revised after results, {where}: {why})" if why else f"Rule (set at {where})"


def malformed_tag(tag: str) -> bool:
    """True when ``tag`` is none of SOURCES.md's three kinds."""
    return TAG_PATTERN.fullmatch(tag) is None


SOURCES_PARAGRAPH = (
    "Three texts are known of the paper: its JMIV abstract (tag `JMIV abstract`); the earlier ICLR 2018 "
    "submission \"Taking Apart Autoencoders\" (tag `ICLR 2018 §…`: main text, propositions, equations and figure "
    "captions, not its appendices; it has no position part); and the authors' released Keras code with its "
    "example model (tag `released code`: disks only). The body of the JMIV paper, and with it the set-up of its "
    "position (Dirac) experiments, was never available: no JMIV section or figure is cited, and the set-ups of "
    "P1–P3 are our readings of one sentence of the abstract each. Each claim below gives what its source says, "
    "our reading (every choice the source does not make) and our result.")
