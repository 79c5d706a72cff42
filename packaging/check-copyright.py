#!/usr/bin/env python3
"""Checks a Debian copyright file: `check-copyright.py COPYRIGHT LICENSE SPDX-ID`.

Used by packaging/check. The file must be machine-readable (DEP-5), put `Files: *` under
SPDX-ID with a Copyright line, and carry a stand-alone `License: SPDX-ID` paragraph whose
text, unindented (" ." is an empty line), is exactly the LICENSE file.
"""

import sys

FORMAT = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"


def problems(text, license_text, spdx):
    paras = [p.strip("\n") for p in text.split("\n\n") if p.strip()]
    if not paras or not paras[0].startswith(FORMAT + "\n"):
        yield "no DEP-5 Format header"
    files = [p.split("\n") for p in paras if p.startswith("Files: *\n")]
    if len(files) != 1 or f"License: {spdx}" not in files[0]:
        yield f"no single 'Files: *' paragraph under License: {spdx}"
    elif not any(line.startswith("Copyright: ") for line in files[0]):
        yield "the 'Files: *' paragraph has no Copyright line"
    full = [p for p in paras if p.startswith(f"License: {spdx}\n")]
    if len(full) != 1:
        yield f"no stand-alone License: {spdx} paragraph with the licence text"
        return
    lines = full[0].split("\n")[1:]
    if any(not line.startswith(" ") for line in lines):
        yield "a line of the licence text is not indented (not DEP-5)"
    body = "\n".join("" if line == " ." else line[1:] for line in lines)
    if body.strip("\n") != license_text.strip("\n"):
        yield "the licence text differs from LICENSE"


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: check-copyright.py COPYRIGHT LICENSE SPDX-ID")
    path, license_path, spdx = sys.argv[1:]
    with open(path) as f, open(license_path) as g:
        found = list(problems(f.read(), g.read(), spdx))
    for p in found:
        print(f"{path}: {p}", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
