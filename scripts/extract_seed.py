"""Write the seed's kernel (the Python block of the seed document) to a file, unmodified, for
``python -m fastconv verify``.  The copy belongs in an ignored folder (``.outside/``): it is someone else's
code under test, never part of the project.

    python scripts/extract_seed.py ../shared/seed/000_afb75b68a3bc9d02.txt .outside/seed.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def extract(document: str) -> str:
    """The first fenced ```python block that defines ``ModelNew`` (the seed's code)."""
    for block in re.findall(r"```python\n(.*?)```", document, flags=re.S):
        if "class ModelNew" in block:
            return block
    raise ValueError("no ```python block with class ModelNew in the document")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, dest = Path(argv[0]), Path(argv[1])
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(extract(src.read_text()))
    print(f"wrote {dest} ({dest.stat().st_size} bytes) from {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
