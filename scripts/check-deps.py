#!/usr/bin/env python3
"""Fails when something the build, the tests or the demo run is not installed by
packaging/install-deps.sh.

A green CI on a machine where packages were installed by hand proves nothing about a new
Debian 12 machine. This check does not look at what this machine has; it asks, for every
command, Python module and data file that the tracked scripts use, which Debian package
provides it here, and whether that package is installed on a fresh machine: a package
install-deps.sh names, a package those depend on (installed, so dpkg's own records give the
closure without apt lists or the network), or Debian's base (Priority: required, plus make,
which runs the README's commands).

What it scans (git ls-files): shell scripts (*.sh, .ci/run, the Makefile's recipes) for
words in a command position; CMake files for find_program() names; Python files and the
Python snippets in shell scripts for imports; every tracked text file for absolute paths
under /usr/share and /usr/lib that exist here. A command this machine lacks altogether is
reported too, unless it is a function, alias or variable the scripts define.

Exit status: 0 all provided, 1 something missing (one line per item, with its package).
"""
import json
import os
import re
import shutil
import subprocess
import sys

# Debian's own directories: a command found only in /usr/local or a home directory was
# installed by hand.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_PYTHON = "/usr/bin/python3"
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# Prefix commands: the word after them (after their options) is a command too.
PREFIXES = {
    "sudo", "env", "exec", "command", "time", "timeout", "nice", "xargs", "nohup", "runuser",
    "setpriv", "nsenter", "chroot", "unshare", "systemd-run", "then", "do", "else", "if",
    "while", "until", "!", "elif", "fakeroot", "stdbuf",
}
SHELL_WORDS = {
    "if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case",
    "esac", "function", "select", "return", "local", "export", "readonly", "declare", "set",
    "unset", "shift", "trap", "wait", "cd", "echo", "printf", "read", "eval", "source", ".",
    ":", "true", "false", "test", "[", "[[", "exit", "break", "continue", "kill", "type",
    "hash", "ulimit", "umask", "getopts", "let", "pushd", "popd", "builtin", "alias",
    "mapfile", "jobs", "disown", "bg", "fg", "pwd", "times", "shopt", "caller", "compgen",
    "complete", "typeset", "suspend", "logout", "enable", "help", "history",
}


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True).stdout


def tracked():
    r = subprocess.run(["git", "-C", SRC, "ls-files"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("check-deps: needs a git checkout of cwt (git ls-files failed)")
    out = r.stdout
    return [f for f in out.splitlines() if os.path.isfile(os.path.join(SRC, f))]


def read(path):
    with open(os.path.join(SRC, path), encoding="utf-8", errors="replace") as f:
        return f.read()


def strip_comment(line):
    # A '#' that starts a word starts a comment ("$#", "${#x}" and "a#b" do not).
    m = re.search(r"(^|\s)#", line)
    return line[: m.start()] if m else line


def shell_commands(text, defined):
    """Words in a command position of a shell text, heredoc bodies skipped."""
    found = set()
    heredoc = None
    for raw in text.splitlines():
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", raw)
        if m:
            heredoc = m.group(1)
        line = strip_comment(raw)
        for m in re.finditer(r"^\s*(\w[\w-]*)\s*\(\)\s*\{?", line):
            defined.add(m.group(1))
        for m in re.finditer(r"\b(\w+)=", line):
            defined.add(m.group(1))
        # Split into simple commands at control operators and substitutions.
        for part in re.split(r"\|\||&&|[;|&(){}`]|\$\(|\bthen\b|\bdo\b|\belse\b", line):
            words = part.split()
            i = 0
            while i < len(words):
                w = words[i]
                if re.match(r"^\w+=", w):  # VAR=value cmd
                    i += 1
                    continue
                if w in PREFIXES:
                    i += 1
                    # skip the prefix's options and their arguments up to a command-like word
                    while i < len(words) and (words[i].startswith("-") or
                                              re.match(r"^[\d.]+[smh]?$", words[i]) or
                                              re.match(r"^\w+=", words[i])):
                        if words[i] == "--":
                            i += 1
                            break
                        i += 1
                    continue
                if re.match(r"^[A-Za-z][\w.+-]*$", w):
                    found.add(w)
                if "--" in words[i + 1:]:  # runuser -u x -- cmd, nsenter ... -- cmd
                    j = words.index("--", i + 1)
                    if j + 1 < len(words) and re.match(r"^[A-Za-z][\w.+-]*$", words[j + 1]):
                        found.add(words[j + 1])
                break
    return found


def makefile_recipes(text):
    return "\n".join(l[1:] for l in text.splitlines() if l.startswith("\t"))


def python_imports(text):
    mods = set()
    for line in text.splitlines():
        line = strip_comment(line)
        for m in re.finditer(r"(?:^|[;\"'])\s*import\s+([\w, .]+)", line):
            for name in m.group(1).split(","):
                name = name.strip().split(" ")[0].split(".")[0]
                if name:
                    mods.add(name)
        for m in re.finditer(r"(?:^|[;\"'])\s*from\s+(\w+)[\w.]*\s+import\b", line):
            mods.add(m.group(1))
    return mods


def module_origins(mods):
    """module -> file it loads from, as Debian's python3 finds it (None: not found). The
    interpreter running this check may be another one (a pyenv in PATH)."""
    code = ("import importlib.util, json, sys\n"
            "out = {}\n"
            "for m in sys.argv[1:]:\n"
            "    try:\n"
            "        s = importlib.util.find_spec(m)\n"
            "    except (ImportError, ValueError):\n"
            "        s = None\n"
            "    out[m] = None if s is None else (s.origin or '')\n"
            "print(json.dumps(out))\n")
    if not os.path.exists(DEBIAN_PYTHON):
        return {}
    r = subprocess.run([DEBIAN_PYTHON, "-c", code] + mods, capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def installed_packages():
    """name -> (depends, priority, essential, provides) of every installed package."""
    fmt = "${Package}\t${Status}\t${Priority}\t${Essential}\t${Pre-Depends}, ${Depends}\t${Provides}\n"
    pkgs = {}
    for line in sh("dpkg-query", "-W", "-f", fmt).splitlines():
        name, status, prio, ess, deps, prov = (line.split("\t") + [""] * 6)[:6]
        if not status.endswith("installed") or "not-installed" in status:
            continue
        pkgs[name] = (deps, prio, ess, prov)
    return pkgs


def dep_names(field):
    """[[alternative, ...], ...] of a Depends field, versions and arch qualifiers dropped."""
    groups = []
    for group in field.split(","):
        alts = [re.sub(r"[\s(].*$", "", a.strip()).split(":")[0] for a in group.split("|")]
        alts = [a for a in alts if a]
        if alts:
            groups.append(alts)
    return groups


def closure(roots, pkgs):
    providers = {}
    for name, (_, _, _, prov) in pkgs.items():
        for alts in dep_names(prov):
            for a in alts:
                providers.setdefault(a, []).append(name)
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen or p not in pkgs:
            continue
        seen.add(p)
        for alts in dep_names(pkgs[p][0]):
            for a in alts:  # every installed alternative may be the one a new machine gets
                todo.extend([a] if a in pkgs else providers.get(a, []))
    return seen


def owner(path):
    """The installed package that ships path (also through /usr-merge and alternatives)."""
    cands = [path, os.path.realpath(path)]
    if path.startswith("/usr/"):
        cands.append(path[4:])  # /usr/bin/x is /bin/x in dpkg's records on a merged /usr
    for c in cands:
        out = subprocess.run(["dpkg-query", "-S", c], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if ": " in line and not line.startswith("diversion"):
                return line.split(": ")[0].split(",")[0].split(":")[0].strip()
    return None


def main():
    deps_sh = read("packaging/install-deps.sh")
    m = re.search(r'PKGS="([^"]*)"', deps_sh)
    if not m:
        print("check-deps: no PKGS list in packaging/install-deps.sh", file=sys.stderr)
        return 1
    roots = set(m.group(1).split())
    # CHECK_DEPS_WITHOUT="a b": check as if the list lacked these (tests/deps/checks.sh).
    roots -= set(os.environ.get("CHECK_DEPS_WITHOUT", "").split())
    pkgs = installed_packages()
    absent = sorted(p for p in roots if p not in pkgs)
    if absent:
        print("check-deps: install-deps.sh names packages not installed here (run 'make deps'): "
              + " ".join(absent), file=sys.stderr)
        return 1
    base = {n for n, (_, prio, ess, _) in pkgs.items() if prio == "required" or ess == "yes"}
    covered = closure(roots | base | {"make"}, pkgs)

    files = tracked()
    shells = [f for f in files if f.endswith(".sh") or f == ".ci/run"]
    defined, commands, where = set(), set(), {}

    def add(cmds, f):
        for c in cmds:
            commands.add(c)
            where.setdefault(c, f)

    for f in shells:
        add(shell_commands(read(f), defined), f)
    add(shell_commands(makefile_recipes(read("Makefile")), defined), "Makefile")
    for f in files:
        if f.endswith("CMakeLists.txt") or f.endswith(".cmake"):
            for m in re.finditer(r"find_program\(\s*\w+\s+(?:NAMES\s+)?([^)]*)\)", read(f)):
                names = re.split(r"\s+", m.group(1))
                add([n for n in names if re.match(r"^[A-Za-z][\w.+-]*$", n)
                     and n not in ("NAMES", "REQUIRED", "PATHS", "HINTS")][:1], f)

    # Run by the tools, not by a script: LeakSanitizer resolves the function names that
    # tests/fuzz/lsan.supp suppresses with llvm-symbolizer.
    add(["llvm-symbolizer"], "tests/fuzz/lsan.supp")

    modules, mwhere = set(), {}
    for f in files:
        if f.endswith(".py") or f in shells:
            for mod in python_imports(read(f)):
                modules.add(mod)
                mwhere.setdefault(mod, f)

    paths, pwhere = set(), {}
    for f in files:
        if f.startswith("docs/") or f.endswith((".md", ".1", ".5", ".8")):
            continue
        try:
            text = read(f)
        except OSError:
            continue
        for m in re.finditer(r"/usr/(?:share|lib)/[\w.+/-]+", text):
            p = m.group(0).rstrip("/.")
            if os.path.exists(p):
                paths.add(p)
                pwhere.setdefault(p, f)

    problems = []
    local_modules = {os.path.splitext(os.path.basename(f))[0] for f in files if f.endswith(".py")}
    for c in sorted(commands - SHELL_WORDS - defined):
        exe = shutil.which(c, path=SYSTEM_PATH)
        if exe is None:
            other = shutil.which(c)
            if other is not None:
                problems.append(f"command '{c}' ({where[c]}) is {other}, which no Debian "
                                "package ships")
            continue  # a word that is no command anywhere here (text, a name): not ours to judge
        pkg = owner(exe)
        if pkg is None:
            problems.append(f"command '{c}' ({where[c]}) is {exe}, which no Debian package ships")
        elif pkg not in covered:
            problems.append(f"command '{c}' ({where[c]}) comes from package {pkg}")
    origins = module_origins(sorted(modules - local_modules))
    for mod in sorted(modules - local_modules):
        origin = origins.get(mod)
        if origin is None:
            problems.append(f"Python module '{mod}' ({mwhere[mod]}) is not installed for "
                            f"{DEBIAN_PYTHON}")
            continue
        if origin in ("built-in", "frozen", ""):
            continue
        pkg = owner(origin)
        if pkg is None:
            problems.append(f"Python module '{mod}' ({mwhere[mod]}) is {origin}, which no "
                            "Debian package ships (pip?)")
        elif pkg not in covered:
            problems.append(f"Python module '{mod}' ({mwhere[mod]}) comes from package {pkg}")
    for p in sorted(paths):
        if os.path.isdir(p):
            continue  # folders such as /usr/share/man belong to many packages
        pkg = owner(p)
        if pkg is not None and pkg not in covered:
            problems.append(f"file {p} ({pwhere[p]}) comes from package {pkg}")

    if problems:
        print("check-deps: packaging/install-deps.sh does not install what these need:",
              file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"check-deps: ok ({len(commands - SHELL_WORDS - defined)} commands, {len(modules)} "
          f"Python modules, {len(paths)} system paths; all from packages install-deps.sh "
          "installs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
