"""doc_blocks.py [--run] DOC WORKDIR [FROM TO ...]: checks that every fenced block of the
Markdown file DOC says how it is tested, and with --run runs every shell block that is not
marked, in WORKDIR, as written.

A block is what a reader copies, so each one either runs here or carries, on the line right
above its fence, one of these HTML comments (invisible when the page is rendered):

  <!-- illustrative: REASON -->              not run: REASON says why (placeholders, output)
  <!-- tested by tests/cli/NAME: HOW -->     run by that test, which must name DOC

Without --run an unmarked block fails the test and nothing runs: the admin guide's blocks
need root and systemd, and a test must not enable a service because a block lost its marker.
With --run a shell block ("sh", "shell", "bash") without such a comment runs here, command
by command (a line ending in a backslash goes on), each with bash in WORKDIR; it must exit 0.
Lines starting with "# " right after a command are the output it prints, line by line from
its first: "..." stands for anything and a group of four hex digits for any such group. Any
other unmarked block fails the test. FROM TO pairs replace text of the block before it runs
(a placeholder such as FILE.cwtb, or a key line that only a real site has); each must be
used. Exits 1 with the reasons.

doc_blocks.py --print DOC TEXT prints the one block of DOC that holds TEXT (or, where several
do, the one that is TEXT alone),
for a test that runs it as written where this script cannot (as root in a container)."""
import os
import re
import subprocess
import sys

SHELL = {"sh", "shell", "bash"}
MARK = re.compile(r"^<!-- (illustrative: .+|tested by (tests/cli/[\w./-]+): .+) -->$")


def blocks(text):
    """Yields (line number, language, lines, marker line) for every fenced block."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        # A fence may be indented (a block inside a list item): its lines lose that indent.
        m = re.match(r"^( *)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, indent, lang = i, m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != indent + "```":
            j += 1
        k = start - 1
        while k >= 0 and lines[k].strip() == "":
            k -= 1
        body = [b[len(indent):] if b.startswith(indent) else b.lstrip() for b in lines[start + 1:j]]
        yield start + 1, lang, body, lines[k].strip() if k >= 0 else ""
        i = j + 1


def expected_re(line):
    """A documented output line as a pattern: '...' is anything, 4 hex digits any 4."""
    parts = re.split(r"(\.\.\.|\b[0-9a-f]{4}\b)", line)
    out = []
    for p in parts:
        if p == "...":
            out.append(".*")
        elif re.fullmatch(r"[0-9a-f]{4}", p):
            out.append("[0-9a-f]{4}")
        else:
            out.append(re.escape(p))
    return re.compile("^" + "".join(out) + "$")


def commands(lines):
    """Yields (command, [expected output lines]) from a shell block."""
    cmd, expect = None, []
    pending = ""
    for line in lines:
        if pending:
            pending += "\n" + line
            if not line.endswith("\\"):
                cmd, pending = pending, ""
            continue
        if line.startswith("# ") and cmd is not None:
            expect.append(line[2:])
            continue
        if line.strip() == "" or line.startswith("#"):
            continue
        if cmd is not None:
            yield cmd, expect
        cmd, expect = None, []
        if line.endswith("\\"):
            pending = line
        else:
            cmd = line
    if cmd is not None:
        yield cmd, expect


def print_block(doc, text):
    """Prints the body of the one block of DOC that holds TEXT, or else of the one that is
    TEXT alone; exits 1 otherwise."""
    found = [body for _, _, body, _ in blocks(open(doc, encoding="utf-8").read())
             if text in "\n".join(body)]
    if len(found) > 1:
        found = [body for body in found if "\n".join(body).strip() == text]
    if len(found) != 1:
        sys.exit(f"{doc}: {len(found)} blocks hold '{text}', not one")
    print("\n".join(found[0]))


def main():
    args = sys.argv[1:]
    if args[:1] == ["--print"] and len(args) == 3:
        print_block(args[1], args[2])
        return
    run = args[:1] == ["--run"]
    if run:
        args = args[1:]
    if len(args) < 2 or len(args) % 2:
        sys.exit("usage: doc_blocks.py [--run] DOC WORKDIR [FROM TO ...]")
    doc, workdir = args[0], args[1]
    subst = list(zip(args[2::2], args[3::2]))
    used = set()
    name = os.path.basename(doc)
    problems, ran = [], 0
    for lineno, lang, body, mark in blocks(open(doc, encoding="utf-8").read()):
        where = f"{name}:{lineno}"
        m = MARK.match(mark)
        if m:
            test = m.group(2)
            if test is not None:
                path = os.path.join(os.environ["CWT_SRC"], test)
                if not os.path.exists(path) or name not in open(path, encoding="utf-8").read():
                    problems.append(f"{where}: {test} does not exist or does not name {name}")
            continue
        if not run or lang not in SHELL:
            problems.append(f"{where}: a {lang or 'plain'} block that is neither run here nor "
                            "marked <!-- illustrative: ... --> or <!-- tested by ... -->")
            continue
        text = "\n".join(body)
        for i, (a, b) in enumerate(subst):
            if a in text:
                used.add(i)
                text = text.replace(a, b)
        for cmd, expect in commands(text.split("\n")):
            ran += 1
            r = subprocess.run(["bash", "-c", cmd], cwd=workdir, capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"{where}: `{cmd}` exited {r.returncode}: {r.stderr.strip()}")
                continue
            got = r.stdout.split("\n")
            for n, want in enumerate(expect):
                if n >= len(got) or not expected_re(want).match(got[n]):
                    problems.append(f"{where}: `{cmd}` printed {got[:len(expect)]}, the guide "
                                    f"shows {expect}")
                    break
    for i, (a, _) in enumerate(subst):
        if i not in used:
            problems.append(f"{name}: the replacement of '{a}' was not used (the guide changed?)")
    for p in problems:
        print("FAIL: " + p, file=sys.stderr)
    print(f"{name}: {ran} commands run, {len(problems)} problems")
    sys.exit(1 if problems else 0)


main()
