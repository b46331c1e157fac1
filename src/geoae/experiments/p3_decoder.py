"""P3D: the second reading of P3: decoding apart from encoding (a decoder behind the exact hand-crafted encoder).

The abstract says that decoding "can be achieved if the dataset is sampled in an appropriate manner"; it does not
say whether the encoder is learned too. P3 reads it end to end (the autoencoder of P2, whose encoder rarely finds
the ramp: P2); this reading asks the decoder alone. The runs are P3's controls (``ModelConfig(encoder='position')``:
the frozen hand-crafted position encoder, z = (1, p/n) exactly, only the decoder trained), on P3's sampling
schemes, scored the same way (accuracy on the held-out positions) under the same thresholds, with their own
verdict.
"""

from __future__ import annotations

import math

from . import sources
from .common import Context, Number, Result, verdict_from
from .p2 import _group, size_text
from .p3 import PARTLY, WORKS, _nanmean, decode_scores, plan
from .p3 import runs as p3_runs

ID = "P3D"
TITLE = "P3, second reading: a decoder behind the exact hand-crafted encoder decodes held-out positions"
CLAIM = ("Decoding the position of a Dirac can be achieved if the dataset is sampled in an appropriate manner, "
         "read for the decoder alone (its input is the exact position code).")
PAPER = sources.statement("P3D")
STAGES = (p3_runs,)  # P3's runs (the frozen-encoder ones are used here; shared, trained once)


def analyse(ctx: Context, done: dict) -> Result:
    rows, best = [], {}
    for name, ndim, label, _, encoder, coord in plan(ctx):
        if encoder != "position" or coord:
            continue
        sc = [decode_scores(r) for r in _group(done, name)]
        acc = _nanmean([x["acc_unseen"] for x in sc])
        rows.append([f"{ndim}-D ({size_text(ctx, ndim)})", label, _nanmean([x["acc_seen"] for x in sc]), acc,
                     min(x["acc_unseen"] for x in sc)])
        if math.isfinite(acc) and acc > best.get(ndim, (-1.0, ""))[0]:
            best[ndim] = (acc, label)
    numbers = {f"best_heldout_acc_{nd}d": Number(best.get(nd, (float("nan"), ""))[0],
                                                 f"best accuracy on held-out positions over the schemes, {nd}-D, "
                                                 f"decoder behind the frozen position encoder, mean over "
                                                 f"{len(ctx.seeds)} seeds (scheme: {best.get(nd, (0, 'none'))[1]})")
               for nd in (1, 2)}
    values = [numbers[f"best_heldout_acc_{nd}d"].value for nd in (1, 2)]
    works = [v >= WORKS for v in values if math.isfinite(v)]
    verdict = verdict_from(len(works) == 2 and all(works),
                           any(works) or all(math.isfinite(v) and v >= PARTLY for v in values))
    rule = (f"P3's rule for the decoder alone: confirmed if, in 1-D and in 2-D, some sampling that holds positions "
            f"out lets the decoder behind the exact encoder decode them (mean held-out accuracy ≥ {WORKS:g}); "
            f"partly if in one of the two, or the best is ≥ {PARTLY:g} in both; not reproduced otherwise.")
    control = "P3's end-to-end autoencoders on the same schemes (P3's record): what a learned encoder changes."
    table = {"title": "Decoders behind the frozen position encoder, per scheme (means over seeds)",
             "columns": ["dims", "scheme", "acc seen", "acc held-out", "worst seed held-out"], "rows": rows}
    headline = (f"best held-out accuracy, decoder alone: {values[0]:.3g} (1-D), {values[1]:.3g} (2-D); needs ≥ "
                f"{WORKS:g}")
    return Result(numbers, verdict, rule, control, tables=[table], headline=headline,
                  notes="The runs are P3's frozen-encoder controls; in the quick profile only one scheme per "
                        "dimension has them.")
