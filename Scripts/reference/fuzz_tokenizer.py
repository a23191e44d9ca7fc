#!/usr/bin/env python3
"""Differential fuzzing of `sd tokenize` against transformers' CLIPTokenizer (a development aid; CI never runs it).

  ~/.sd-ref-venv/bin/python Scripts/reference/fuzz_tokenizer.py --sd .build/debug/sd --tokenizer DIR [--seed N] [--count N]

DIR is a tokenizer folder (vocab.json + merges.txt + configs, or tokenizer.json). Random prompts mix ASCII words,
contractions, special-token spellings, odd spaces, combining marks, emoji and characters from the whole Unicode
range (new scripts included, to exercise the Unicode table versions); every mismatch is printed.
"""
import argparse
import json
import random
import subprocess
import unicodedata

from transformers import CLIPTokenizer

PIECES = ["'s", "'S", "'T", "'re", "'ll", "'", "!", "!!", "<|endoftext|>", "<|ENDOFTEXT|>", "<|startoftext|>",
          " ", "  ", "\t", "\n", "İ", "Σ", "ß", "é", "e\u0301", "\u0301", "\u200d", "\ufe0f", "🙂", "👩‍👩‍👧",
          "&amp;", "1", "٣", "½", "Ⅻ", "ǅ", "ﬃ", "\u00a0", "\u3000", "\u0085", "\u200b", "\u180e", "\u001c",
          "\u2028", "\u1680", "\ufeff", "Ա", "ᏸ", "ꭰ", "𐐀", "ǰ", "ẞ", "K", "Å", "Ω", "ΐ", "ᾈ", "Ⓐ"]


def random_char(rng):
    while True:
        r = rng.random()
        cp = rng.randint(0x20, 0x2FFF) if r < 0.5 else rng.randint(0x3000, 0xFFFF) if r < 0.7 else rng.randint(0x10000, 0x1FAFF)
        c = chr(cp)
        if unicodedata.category(c) not in ("Cs", "Co"):
            return c


def random_prompt(rng):
    s = ""
    for _ in range(rng.randint(1, 20)):
        r = rng.random()
        s += (rng.choice(PIECES) if r < 0.3 else random_char(rng) if r < 0.6
              else rng.choice(["Hello", "WORLD", "dOg", "a", "x"]) if r < 0.8 else " ")
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sd", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=200)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tok = CLIPTokenizer.from_pretrained(args.tokenizer)
    bad = 0
    for _ in range(args.count):
        p = random_prompt(rng)
        want = tok(p, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
        run = subprocess.run([args.sd, "tokenize", "--tokenizer", args.tokenizer, "--prompt", p],
                             capture_output=True, text=True)
        got = json.loads(run.stdout) if run.returncode == 0 else run.stderr
        if got != want:
            bad += 1
            print("MISMATCH", ascii(p), "\n  want", want, "\n  got ", got)
    print(f"{args.count} prompts, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
