#!/usr/bin/env python3
"""Regenerate src/labels/imagenet1k.txt (ImageNet-1k class names) from the timm wheel.

Usage::

    make_imagenet_labels.py [--wheel timm-X-py3-none-any.whl]
                            [--timm-version 1.0.31] [--out src/labels/imagenet1k.txt]

Provenance
    The PyPI ``timm`` wheel ships the ImageNet metadata that timm's
    ``timm.data.ImageNetInfo`` uses:

    * ``timm/data/_info/imagenet_synsets.txt``: the 1000 ImageNet-1k WordNet synset
      ids, one per line, in the standard class-index order (0 = n01440764 ...).
    * ``timm/data/_info/imagenet_synset_to_lemma.txt``: ``synset<TAB>lemmas``, e.g.
      ``n02111889<TAB>Samoyed, Samoyede``.

    The label for class i is the first lemma (the text before the first comma) of
    synset i, as in the common short label lists; so, e.g., class 0 is "tench",
    258 "Samoyed", 999 "toilet tissue".  A few short names repeat because distinct
    synsets share a first lemma (134 and 517 are both "crane", 638 and 639 both
    "maillot"); the index, not the name, identifies the class.

    Only the wheel's zip is read; timm (and torch) are never installed or imported.
    Without ``--wheel``, the wheel is fetched with
    ``python -m pip download --no-deps timm==VERSION`` into a temporary directory.
    The wheel name and its SHA-256 are printed so a regenerated file can be traced.

The output has exactly 1000 lines, UTF-8, ``\\n`` line endings, with a final newline.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"
DEFAULT_VERSION = "1.0.31"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src",
                           "labels", "imagenet1k.txt")
# spot checks of the standard ImageNet-1k order
EXPECTED = {0: "tench", 1: "goldfish", 258: "Samoyed", 999: "toilet tissue"}


def download_wheel(version: str, dest: str) -> str:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", dest, f"timm=={version}"]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    wheels = glob.glob(os.path.join(dest, "timm-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"error: expected one timm wheel in {dest}, found {wheels}")
    return wheels[0]


def labels_from_wheel(wheel: str) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        synsets = zf.read(SYNSETS).decode("utf-8").splitlines()
        lemma_lines = zf.read(LEMMAS).decode("utf-8").splitlines()
    # parsed exactly like timm.data.ImageNetInfo does
    lemmas = dict(csv.reader(lemma_lines, delimiter="\t"))
    if len(synsets) != 1000:
        raise SystemExit(f"error: {SYNSETS} has {len(synsets)} lines, expected 1000")
    labels = []
    for idx, synset in enumerate(synsets):
        if synset not in lemmas:
            raise SystemExit(f"error: no lemma for synset {synset} (class {idx})")
        name = lemmas[synset].split(",")[0].strip()
        if not name or "\n" in name:
            raise SystemExit(f"error: bad label {name!r} for class {idx}")
        labels.append(name)
    for idx, name in EXPECTED.items():
        if labels[idx] != name:
            raise SystemExit(f"error: class {idx} is {labels[idx]!r}, expected {name!r}")
    return labels


def main() -> None:
    ap = argparse.ArgumentParser(description="Write the ImageNet-1k label list from the timm wheel.")
    ap.add_argument("--wheel", help="path to a timm wheel (default: pip download it)")
    ap.add_argument("--timm-version", default=DEFAULT_VERSION,
                    help=f"timm version to download (default {DEFAULT_VERSION})")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output file (default src/labels/imagenet1k.txt)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(args.timm_version, tmp)
        with open(wheel, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        labels = labels_from_wheel(wheel)

    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(labels) + "\n")
    print(f"wrote {out}: {len(labels)} labels from {os.path.basename(wheel)} "
          f"(sha256 {digest}); 0={labels[0]!r} 258={labels[258]!r} 999={labels[999]!r}")


if __name__ == "__main__":
    main()
