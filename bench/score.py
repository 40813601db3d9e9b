"""Score a reduced file against the simulation's truth and check the demo's targets.

Usage: python bench/score.py REDUCED.cxi RUN.h5
Targets (issue 2): every non-weak true hit kept, weak hits kept >= 80%, misses kept <= 2%,
peak recall >= 0.9 at precision >= 0.9 on true hits.
"""

import sys

from mpireduce.scoring import __doc__ as MATCH_RULE
from mpireduce.scoring import score_output


def main(argv) -> int:
    output, run = argv[1], argv[2]
    result = score_output(output, run)
    kept, peaks = result["kept"], result["peaks"]
    print("decisions vs truth:", " | ".join(f"{k} {n}: kept {100 * f:.1f}%" for k, (n, f) in kept.items()))
    print(f"peaks on true hits: precision {peaks.precision:.3f} recall {peaks.recall:.3f} F1 {peaks.f1:.3f} "
          f"({peaks.found} found, {peaks.visible} visible spots)")
    print("  match rule:", " ".join(MATCH_RULE.split("\n\n")[1].split()))
    checks = {
        "non-weak hits all kept": all(kept[k][1] == 1.0 for k in ("hit", "multi") if kept[k][0]),
        "weak hits kept >= 80%": kept["weak"][0] == 0 or kept["weak"][1] >= 0.8,
        "misses kept <= 2%": kept["miss"][1] <= 0.02,
        "peak recall >= 0.9": peaks.recall >= 0.9,
        "peak precision >= 0.9": peaks.precision >= 0.9,
    }
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISSED'}] {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
