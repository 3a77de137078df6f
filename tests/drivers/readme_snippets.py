"""The README's "Calling it from your stack" shows each file of examples/snippets/ whole, in
a fenced code block, so that every snippet a reader copies is one the clients step runs
(each example's test.sh runs its drivers' snippets against a real server). Fails on a
snippet missing from the README, or a README block that differs from its file."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
readme = (ROOT / "README.md").read_text()
blocks = [m.group(1) for m in re.finditer(r"^```[a-z]*\n(.*?)^```$", readme, re.M | re.S)]
snippets = sorted((ROOT / "examples" / "snippets").iterdir())
missing = [p.name for p in snippets if p.read_text() not in blocks]
for name in missing:
    print(f"readme: examples/snippets/{name} is not in README.md as a code block of its own (copy the file whole)")
print(f"readme: {len(snippets) - len(missing)} of {len(snippets)} snippets appear in README.md as they are tested")
sys.exit(1 if missing or not snippets else 0)
