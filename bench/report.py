"""The benchmarks' one way into docs/benchmarks.md: each benchmark owns a section (from its
`## ` heading to the next) and rewrites only that."""


def replace_section(output, heading, section):
    """`section`, which starts with `heading`, replaces the section that starts with it in
    `output`, or goes at the end the first time."""
    text = output.read_text() if output.exists() else "# Benchmarks\n"
    before, found, rest = text.partition(heading)
    after = rest[rest.find("\n## ") :] if found and "\n## " in rest else ""
    output.write_text(before.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n" + after)
