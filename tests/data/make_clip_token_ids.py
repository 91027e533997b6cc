#!/usr/bin/env python3
"""Reference CLIP token ids for tests/tokenizer.rs.

Writes tests/data/clip_token_ids.json: for every prompt below, the 77 ids that
Hugging Face's slow `CLIPTokenizer` (the Python port of OpenAI's tokenizer, run
with ftfy installed, as OpenAI's own code does) produces with BOS, EOS,
truncation and padding, for the tokenizer in assets/model/tokenizer/. Where the
fast `CLIPTokenizerFast` (the `tokenizers` pipeline the Rust code rebuilds)
disagrees, its ids are recorded too, under "fast_ids".

Run it from the repository root in a throwaway virtual environment outside the
repository (transformers 5 dropped the slow tokenizer, so pin 4.x):

    python3 -m venv /tmp/tokref
    /tmp/tokref/bin/pip install "transformers<5" ftfy
    /tmp/tokref/bin/python tests/data/make_clip_token_ids.py

No model hub is involved: both tokenizers load from the local folder.
"""

import json
import pathlib
import sys

import ftfy
import tokenizers
import transformers
from transformers import CLIPTokenizer, CLIPTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER_DIR = ROOT / "assets" / "model" / "tokenizer"
OUT = ROOT / "tests" / "data" / "clip_token_ids.json"
MAX_LEN = 77

LONG = (
    "a highly detailed matte painting of a sprawling cyberpunk city at night, "
    "neon lights reflecting in the rain soaked streets, flying cars, towering "
    "skyscrapers covered in holographic advertisements, crowds of people with "
    "umbrellas, steam rising from manholes, cinematic lighting, volumetric fog, "
    "octane render, unreal engine 5, 8k resolution, trending on artstation, by "
    "greg rutkowski and syd mead and moebius, masterpiece, award winning"
)

PROMPTS = [
    # Empty and whitespace-only prompts: what unconditional generation uses.
    "",
    " ",
    "\n\t ",
    # Typical Stable Diffusion prompts.
    "a cat in a party hat",
    "an astronaut riding a horse, 4k, trending on artstation",
    "a red apple on a wooden table",
    "portrait of a woman, highly detailed, digital painting, artstation, concept art, "
    "smooth, sharp focus, illustration, art by greg rutkowski and alphonse mucha",
    "(masterpiece:1.2), [worst quality], {braces}, score_9",
    # Casing.
    "A Photo Of A Cat",
    "ALL CAPS PROMPT",
    "MiXeD CaSe wOrDs",
    "IT'S LOUD",
    "İstanbul",
    "ΟΔΟΣ ΣΟΦΟΣ final sigma",
    "Straße STRASSE",
    "ǅ titlecase digraph",
    # Punctuation.
    "hello, world! how are you?",
    "...!!!???",
    "---",
    "email@example.com #hashtag @user $100 50% a+b=c",
    "under_score snake_case CamelCase",
    "a/b\\c|d~e^f`g",
    # Digits: CLIP splits every digit.
    "1234567890",
    "year 2024, pi is 3.14159, half is 1/2",
    "x² ½ Ⅻ ٣",
    # Accents, decomposed and precomposed.
    "café crème brûlée",
    "über ñandú naïve façade",
    "cafe\u0301 decomposed",
    # Emoji.
    "🐱 cat in a 🎩",
    "👨\u200d👩\u200d👧 family, ❤️ heart, 👍🏽 thumbs",
    # Scripts other than Latin.
    "东京的夜景",
    "こんにちは世界",
    "한국어 텍스트",
    "greek αβγ Δ cyrillic Привет",
    "arabic مرحبا hebrew שלום",
    "hindi नमस्ते thai สวัสดี",
    # Whitespace runs, tabs, newlines, leading and trailing spaces.
    "  leading and trailing spaces  ",
    "multiple     spaces",
    "tabs\tand\nnewlines\r\nhere",
    "non\u00a0breaking\u2003spaces",
    "zero\u200bwidth space",
    "ws\u1680a\u2000b\u200ac\u202fd\u205fe\u3000f\x0cg\x85h\u2028i\u2029j\x1ck\x0bl",
    # Apostrophes and contractions.
    "it's a cat's hat",
    "they're we've I'm you'll he'd can't",
    "'s at the start",
    "''double single quotes''",
    "rock'n'roll",
    # HTML entities.
    "rock &amp; roll",
    "&lt;tag&gt; &quot;quoted&quot; &#39;single&#39; &#x27;hex&#x27;",
    "fish &amp;amp; chips",
    "<b>bold</b> &amp; text",
    "line one &amp;\nline <two> &amp;\nthree &amp;",
    "P&EACUTE;REZ BUNDESSTRA&SZLIG;E &nTILDE; &#59; &#0; &#150;",
    "caf&eacute; &copy; &nbsp;&hellip;",
    # Hyphens and dashes.
    "well-known high-quality sci-fi",
    "a\u2014em dash \u2013 en dash",
    # Typography that ftfy rewrites.
    "it\u2019s \u201cquoted\u201d",
    "\ufb01ne \ufb02ower ligatures",
    "ＡＢＣ１２３ fullwidth",
    "mojibake cafÃ©",
    "control\x07char",
    "\ufeffbyte order mark",
    "esc \x1b[36;44mblue\x1b[0m",
    "\uff80\uff70\uff9d halfwidth \uff8a\uff9d\uff78\uff9e\uff99 \uffe6 a\uff1cb",
    # The special tokens written out in the prompt.
    "a photo of <|endoftext|> something",
    "<|startoftext|>hello",
    "<|EndOfText|> shouting",
    "a&amp;<|endoftext|>b<i>",
    "\x80<|EndOfText|> &amp; inside a symbol run",
    "σ <|EndOfText|> &quot;",
    # Lengths around the limit of 75 tokens between BOS and EOS.
    " ".join(["a"] * 74),
    " ".join(["a"] * 75),
    " ".join(["a"] * 76),
    " ".join(["cat"] * 100),
    LONG,
    LONG + " " + LONG,
    # Truncation in the middle of a multi-byte character.
    "東京タワーの夜景と富士山" * 8,
    "🐱🎩" * 30 + " cat",
    "한국어" * 13,
    "🦄" * 39,
]

# SD 2.x pads with id 0 ("!"); a few prompts are checked in that mode too.
PAD_ZERO_PROMPTS = [
    "",
    "a cat in a party hat",
    "an astronaut riding a horse, 4k, trending on artstation",
    " ".join(["a"] * 75),
    LONG,
]


def padded(tok, prompt):
    return tok(prompt, padding="max_length", max_length=MAX_LEN, truncation=True).input_ids


def case(slow, fast, prompt, pad_id):
    ids = padded(slow, prompt)
    fast_ids = padded(fast, prompt)
    full = slow(prompt).input_ids
    truncated = None
    if len(full) > MAX_LEN:
        # What CLIP drops: everything between the 76th id and the final EOS.
        dropped = slow.convert_ids_to_tokens(full[MAX_LEN - 1 : -1])
        truncated = slow.convert_tokens_to_string(dropped)
    entry = {
        "prompt": prompt,
        "pad_id": pad_id,
        "ids": ids,
        "num_tokens": min(len(full), MAX_LEN),
        "truncated": truncated,
    }
    if fast_ids != ids:
        entry["fast_ids"] = fast_ids
    return entry


def main():
    slow = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    fast = CLIPTokenizerFast.from_pretrained(TOKENIZER_DIR)
    slow_zero = CLIPTokenizer.from_pretrained(TOKENIZER_DIR, pad_token="!")
    fast_zero = CLIPTokenizerFast.from_pretrained(TOKENIZER_DIR, pad_token="!")
    if slow.fix_text is None:
        sys.exit("ftfy is not installed: the slow tokenizer would not be OpenAI's")
    if slow_zero.pad_token_id != 0:
        sys.exit(f"pad token '!' has id {slow_zero.pad_token_id}, expected 0")

    cases = [case(slow, fast, p, slow.pad_token_id) for p in PROMPTS]
    cases += [case(slow_zero, fast_zero, p, 0) for p in PAD_ZERO_PROMPTS]
    out = {
        "about": "CLIP token ids from Hugging Face's slow CLIPTokenizer with ftfy; "
        "made by tests/data/make_clip_token_ids.py",
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "ftfy": ftfy.__version__,
        },
        "max_len": MAX_LEN,
        "cases": cases,
    }
    # One case per line keeps the file readable and its diffs small.
    head = json.dumps({k: v for k, v in out.items() if k != "cases"}, ensure_ascii=False, indent=1)
    rows = ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in cases)
    OUT.write_text(f'{head[:-2]},\n "cases": [\n  {rows}\n ]\n}}\n', encoding="utf-8")
    differ = [c["prompt"] for c in cases if "fast_ids" in c]
    print(f"wrote {len(cases)} cases to {OUT}; slow and fast differ on {len(differ)}:")
    for p in differ:
        print(f"  {p!r}")


if __name__ == "__main__":
    main()
