#!/usr/bin/env python3
"""Generate the CLIP tokenizer fixtures for Tests/StableDiffusionTests/Fixtures/tokenizer/.

Builds the real 49,408-token CLIP vocabulary (vocab.json + merges.txt) from the BPE file that
open_clip_torch ships, the way the SD 1.x/2.x repositories' files were made, then records what
transformers' `CLIPTokenizer` produces for a list of awkward prompts in three configurations:

  sd1       vocab.json + merges.txt, SD 1.5 tokenizer_config.json/special_tokens_map.json (pad <|endoftext|>)
  sd2       vocab.json + merges.txt, SD 2.1 configs (pad "!")
  sd2-json  tokenizer.json as transformers 5 saves it (merges as ["a","b"] pairs), SD 2.1 flavour
  sd1-added vocab.json + merges.txt with a transformers 4.3x-style tokenizer_config.json alone, whose
            added_tokens_decoder marks <|endoftext|> normalized (so "<|ENDOFTEXT|>" matches it)

The vocab/merges files are stored once (clip-bpe/); the Swift tests combine them with each config.

Run with the pinned reference environment:
  ~/.sd-ref-venv/bin/python Scripts/reference/gen_tokenizer_fixtures.py
"""
import gzip
import json
import os
import shutil
import sys
import tempfile

import open_clip
import tokenizers
import transformers
from transformers import CLIPTokenizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "Tests", "StableDiffusionTests", "Fixtures", "tokenizer")
REF_CONFIGS = os.environ.get("SD_REFERENCE_CONFIGS", "/work/shared/reference-configs")
SD1_CONFIG = os.path.join(REF_CONFIGS, "runwayml-stable-diffusion-v1-5", "tokenizer")
SD2_CONFIG = os.path.join(REF_CONFIGS, "stabilityai-stable-diffusion-2-1", "tokenizer")
BPE_GZ = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")

PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "",
    "   ",
    "A Photo OF a CAT, HDR, 8K",
    "Hello, World!!! How's it going???",
    "don't won't I'm you're we've they'll he'd it's",
    "DON'T SHOUT'S WE'LL",
    "rock'n'roll ''quoted'' 'single' '''",
    "'s 's's ''s x's",
    "tabs\tand\nnewlines\r\nand   multiple    spaces\x0b\x0cend",
    "\t\n  leading and trailing  \n\t",
    "café naïve résumé façade Ångström",
    "cafe\u0301 nai\u0308ve A\u030angstro\u0308m",
    "q\u0301 x\u0323\u0307 combining marks on non-composable bases",
    "東京の夜景、美しい。「引用」",
    "한국어 텍스트 \u1100\u1161\u11a8",
    "emoji 🐱‍👤 👍🏽 ❤️ 🇯🇵 🎉🎉 ☕",
    "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;apos&#39; &nbsp;",
    "ΣΑΣ ΟΔΟΣ İstanbul ǅ ß ẞ ﬃ ΐ",
    "numbers 123 4.5 1,000,000 ²³ ½ ٣٤ Ⅻ ①",
    "punctuation runs ...!!!??? --- ((())) [[x]] {y} <z> @#$%^&*_+=~`|\\/",
    "<|endoftext|> inside the prompt",
    "<|ENDOFTEXT|> upper, <|startoftext|> and <|STARTOFTEXT|>!",
    "hello!world! !! wow!!!",
    "unicode spaces a\u00a0b\u3000c\u2028d\u0085e\u200bf\u180eg\ufeffh\u001ci\u2009j",
    "مرحبا بالعالم and עברית",
    "masterpiece, best quality, (ultra detailed:1.2), [blurry], {{dramatic lighting}}, <lora:foo:0.8>",
    "Ⓐ ① ⅷ ﬁ ﬀ ㎏ ™ ©",
    "Ａ full width ＡＢＣ！ ｶﾀｶﾅ",
    "mixed123numbers abc123def 3d 4k 8K uhd x264 v1.5",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "Tiếng Việt có dấu, Đà Nẵng",
    "हिन्दी देवनागरी लिपि",
    "ภาษาไทย สวัสดี",
    "control\x00chars\x01and\x7fdel",
    "Ǆemo ǈ ǋ Ǳ titlecase",
    # Characters newer than tokenizers' tables: its NFC knows Unicode 9.0, its regex 16.0, lower-casing 17.0.
    "new letters \U00010952\U00010953 garay \U00010D4A\U00010D4B kawi \U00011F04 toto \U0001E290",
    "dives akuru \U00011935\U00011930 marks a\u1df6\u0316 a\u0301\u0316 e\u0316\u0301 case \ua7ce\U00016ea0\ua7cb",
    " ".join(["a highly detailed portrait of a cyberpunk samurai"] * 12),
    "a" * 300,
    "🙂" * 40,
    "long, " * 80 + "end",
    "the quick brown fox jumps over the lazy dog " * 8,
]


def bytes_to_unicode():
    """GPT-2/CLIP byte -> printable-character table, in CLIP's vocabulary order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_vocab(out_dir):
    lines = gzip.open(BPE_GZ).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # 48,894 merges, as in CLIP's simple_tokenizer
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408, len(vocab)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def assemble(vocab_dir, config_dir, dst):
    os.makedirs(dst, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(vocab_dir, name), dst)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(config_dir, name), dst)
    return dst


# tokenizer_config.json as transformers 4.3x writes it: special tokens as strings, flags in added_tokens_decoder.
ADDED_TOKENS_CONFIG = {
    "add_prefix_space": False,
    "added_tokens_decoder": {
        "49406": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False, "special": True},
        "49407": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                  "single_word": False, "special": True},
    },
    "bos_token": "<|startoftext|>",
    "clean_up_tokenization_spaces": True,
    "do_lower_case": True,
    "eos_token": "<|endoftext|>",
    "errors": "replace",
    "model_max_length": 77,
    "pad_token": "<|endoftext|>",
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": "<|endoftext|>",
}


def encode_all(tok):
    n = tok.model_max_length
    rows = []
    for p in PROMPTS:
        full = tok(p).input_ids
        padded = tok(p, padding="max_length", max_length=n, truncation=True)
        rows.append({"ids": full, "input_ids": padded.input_ids, "attention_mask": padded.attention_mask})
    return rows


def compact_json(value, depth=0):
    """JSON with one prompt or one encoded row per line, ASCII-escaped so that decomposed
    accents and odd spaces survive editors and diffs unchanged."""
    pad = " " * depth
    if isinstance(value, dict) and depth < 2:
        items = [f'{pad} {json.dumps(k)}: {compact_json(v, depth + 1).lstrip()}' for k, v in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}" + ("\n" if depth == 0 else "")
    if isinstance(value, list) and depth < 2:
        items = [pad + "  " + json.dumps(v, separators=(",", ":")) for v in value]
        return pad + "[\n" + ",\n".join(items) + "\n" + pad + " ]"
    return pad + json.dumps(value, separators=(",", ":"))


def main():
    tmp = tempfile.mkdtemp()
    bpe_dir = os.path.join(OUT, "clip-bpe")
    build_vocab(bpe_dir)

    sd1 = CLIPTokenizer.from_pretrained(assemble(bpe_dir, SD1_CONFIG, os.path.join(tmp, "sd1")))
    sd2 = CLIPTokenizer.from_pretrained(assemble(bpe_dir, SD2_CONFIG, os.path.join(tmp, "sd2")))

    # The vocabulary is the real one: known ids of the released CLIP tokenizer, and agreement with
    # open_clip's own tokenizer (ftfy + html unescape + whitespace cleanup) on plain prompts.
    assert sd1("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(sd1.get_vocab()) == 49408 and sd1.pad_token_id == 49407 and sd2.pad_token_id == 0
    oc = open_clip.get_tokenizer("ViT-L-14")
    for p in ["a photo of an astronaut riding a horse on mars", "A Photo OF a CAT, HDR, 8K",
              "don't won't I'm you're", "東京の夜景", "the quick brown fox jumps over the lazy dog " * 8]:
        ours = sd1(p, max_length=77, truncation=True).input_ids
        theirs = [int(x) for x in oc([p])[0]][: len(ours)]  # open_clip pads with 0
        assert ours == theirs, (p, ours, theirs)

    # tokenizer.json as transformers 5 saves it, written compactly to keep the fixture small.
    sd2.save_pretrained(os.path.join(tmp, "sd2-saved"))
    json_dir = os.path.join(OUT, "sd2-json")
    os.makedirs(json_dir, exist_ok=True)
    with open(os.path.join(tmp, "sd2-saved", "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    assert isinstance(tj["model"]["merges"][0], list)
    with open(os.path.join(json_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    shutil.copy(os.path.join(tmp, "sd2-saved", "tokenizer_config.json"), json_dir)
    sd2json = CLIPTokenizer.from_pretrained(json_dir)

    # The "a b" string form of merges (older tokenizers) must load to the same tokenizer.
    str_dir = os.path.join(tmp, "sd2-json-str")
    os.makedirs(str_dir)
    tj["model"]["merges"] = [" ".join(m) for m in tj["model"]["merges"]]
    with open(os.path.join(str_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    shutil.copy(os.path.join(json_dir, "tokenizer_config.json"), str_dir)
    sd2str = CLIPTokenizer.from_pretrained(str_dir)

    for name in ("sd1", "sd2"):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        src = SD1_CONFIG if name == "sd1" else SD2_CONFIG
        for f in ("tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(src, f), d)

    added_dir = os.path.join(OUT, "sd1-added")
    os.makedirs(added_dir, exist_ok=True)
    with open(os.path.join(added_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(ADDED_TOKENS_CONFIG, f, indent=2)
        f.write("\n")
    added_tmp = os.path.join(tmp, "sd1-added")
    os.makedirs(added_tmp)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(bpe_dir, name), added_tmp)
    shutil.copy(os.path.join(added_dir, "tokenizer_config.json"), added_tmp)
    sd1added = CLIPTokenizer.from_pretrained(added_tmp)

    expected = {
        "generator": "Scripts/reference/gen_tokenizer_fixtures.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "prompts": PROMPTS,
        "configs": {
            "sd1": encode_all(sd1), "sd2": encode_all(sd2), "sd2-json": encode_all(sd2json),
            "sd1-added": encode_all(sd1added),
        },
    }
    assert encode_all(sd2str) == expected["configs"]["sd2-json"]
    assert expected["configs"]["sd2-json"] == expected["configs"]["sd2"]
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        f.write(compact_json(expected))
    shutil.rmtree(tmp)
    print(f"wrote {OUT}: {len(PROMPTS)} prompts x {len(expected['configs'])} configurations")


if __name__ == "__main__":
    sys.exit(main())
