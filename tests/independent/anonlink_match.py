"""Matches CLKs with Data61's anonlink, the reference the matching kernel must equal.

Usage: anonlink_match.py THRESHOLD SOURCE.txt...
Each SOURCE.txt holds one base64 CLK per line (clkhash's serialisation). Prints JSON: the
candidate pairs of find_candidate_pairs with the Dice coefficient, as [similarity, source,
source, record, record] (similarities in repr, exact), and the groups of greedy_solve, each a
sorted list of [source, record].
"""

import json
import sys

from anonlink import candidate_generation, similarities, solving
from bitarray import bitarray
import base64


def clks(path):
    out = []
    for line in open(path):
        b = bitarray()
        b.frombytes(base64.b64decode(line.strip()))
        out.append(b)
    return out


def main(threshold, *paths):
    datasets = [clks(p) for p in paths]
    sims, (d0, d1), (r0, r1) = candidate_generation.find_candidate_pairs(
        datasets, similarities.dice_coefficient, float(threshold))
    groups = solving.greedy_solve((sims, (d0, d1), (r0, r1)))
    print(json.dumps({
        "candidates": [[repr(s), a, b, i, j] for s, a, b, i, j in zip(sims, d0, d1, r0, r1)],
        "groups": sorted(sorted([d, r] for d, r in g) for g in groups),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
