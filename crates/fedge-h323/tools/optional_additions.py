#!/usr/bin/env python3
"""Post-processes rasn-compiler's output (tools/gen.sh): every extension
addition that is not OPTIONAL in the ASN.1 becomes an Option in Rust.
A sender of an older version of H.225.0 or H.245 leaves out the additions
it does not know, mandatory or not; aligned PER marks each present
addition, so decoding an absent one as None reads the same bits. Also
updates the matching parameter of the struct's `new`."""
import re
import sys

FIELD = re.compile(r"(#\[rasn\(extension_addition[^\]]*\)\]\s*pub )(\w+): (?!Option<)([^,\n]+),")


def main(path):
    text = open(path).read()
    out = []
    pos = 0
    changed = 0
    # Walk struct by struct: fields first, then the `impl X { pub fn new(` after it.
    for m in re.finditer(r"pub struct (\w+) \{.*?\n    \}\n", text, re.S):
        body = m.group(0)
        names = {}

        def fix(f):
            names[f.group(2)] = f.group(3)
            return f"{f.group(1)}{f.group(2)}: Option<{f.group(3)}>,"

        new_body = FIELD.sub(fix, body)
        if not names:
            continue
        out.append(text[pos:m.start()])
        out.append(new_body)
        pos = m.end()
        impl = re.compile(r"impl " + m.group(1) + r" \{\n\s*pub fn new\((.*?)\) -> Self", re.S)
        im = impl.search(text, pos)
        if im:
            params = im.group(1)
            for name, typ in names.items():
                params = re.sub(r"\b" + name + r": " + re.escape(typ) + r"(?=,|\s*$)",
                                f"{name}: Option<{typ}>", params)
            out.append(text[pos:im.start(1)])
            out.append(params)
            pos = im.end(1)
        changed += len(names)
    out.append(text[pos:])
    open(path, "w").write("".join(out))
    print(f"{changed} extension additions made optional", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
