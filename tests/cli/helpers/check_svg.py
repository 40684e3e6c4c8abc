#!/usr/bin/env python3
"""check_svg.py FILE...: a simulate plot is readable and says where it came from.

* tick labels (class xtick/ytick) are round: evenly spaced by 1, 2 or 5 times a power of ten
  (the visits plot's x ticks are the visit lengths asked for and are not checked);
* series (polyline class="series") have distinct styles: no two share colour, dash and marker,
  and the first 25 differ in dash or marker alone;
* <desc> and the footer name the cwt version and the command line.
Exits 1 with one sentence on the first failure."""
import math
import sys
import xml.dom.minidom


def fail(msg):
    print("check_svg: " + msg, file=sys.stderr)
    sys.exit(1)


def round_ticks(vals, what):
    if len(vals) < 2:
        fail(f"{what}: fewer than 2 ticks: {vals}")
    steps = {round(b - a, 12) for a, b in zip(vals, vals[1:])}
    if len(steps) != 1:
        fail(f"{what}: ticks not evenly spaced: {vals}")
    step = steps.pop()
    mant = step / 10 ** math.floor(math.log10(step))
    if not any(abs(mant - m) < 1e-9 for m in (1, 2, 5)):
        fail(f"{what}: tick step {step} is not 1, 2 or 5 times a power of ten: {vals}")
    for v in vals:
        if abs(v / step - round(v / step)) > 1e-9:
            fail(f"{what}: tick {v} is not a multiple of {step}")


for path in sys.argv[1:]:
    doc = xml.dom.minidom.parse(path)
    texts = doc.getElementsByTagName("text")
    for cls in ("xtick", "ytick"):
        if cls == "xtick" and path.endswith("cwt-visits.svg"):
            continue
        vals = [float(t.firstChild.data) for t in texts if t.getAttribute("class") == cls]
        round_ticks(vals, f"{path} {cls}")
    styles = []
    for p in doc.getElementsByTagName("polyline"):
        if p.getAttribute("class") == "series":
            styles.append((p.getAttribute("stroke"), p.getAttribute("stroke-dasharray"),
                           p.getAttribute("data-marker")))
    if not styles:
        fail(f"{path}: no series")
    if len(set(styles)) != len(styles):
        fail(f"{path}: two series look the same: {styles}")
    plain = [s[1:] for s in styles[:25]]
    if len(set(plain)) != len(plain):
        fail(f"{path}: two series differ in colour only: {styles}")
    desc = doc.getElementsByTagName("desc")
    d = desc[0].firstChild.data if desc else ""
    if "cwt " not in d or "simulate" not in d:
        fail(f"{path}: <desc> does not name the version and the command")
    footer = " ".join(t.firstChild.data for t in texts
                      if t.parentNode.getAttribute("class") == "provenance")
    if "cwt " not in footer or "simulate" not in footer:
        fail(f"{path}: the footer does not name the version and the command: {footer}")
