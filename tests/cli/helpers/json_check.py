"""json_check.py SCHEMA OUTPUT: OUTPUT is one line of strict UTF-8 holding one JSON document that
validates against docs/schemas/SCHEMA.json (draft 2020-12). Exits 1 with the reason otherwise."""
import json
import os
import sys

import jsonschema

schema_dir = os.path.join(os.environ["CWT_SRC"], "docs", "schemas")


def inline(node):
    """Replaces {"$ref": "NAME.json"} by that file's schema (less $schema and $id). Such a file
    keeps no $defs of its own, so its content means the same wherever it stands; this works on
    every jsonschema release, where resolving one file from another does not."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.endswith(".json") and "/" not in ref:
            sub = json.load(open(os.path.join(schema_dir, ref)))
            for key in ("$schema", "$id"):
                sub.pop(key, None)
            return inline(sub)
        return {k: inline(v) for k, v in node.items()}
    if isinstance(node, list):
        return [inline(v) for v in node]
    return node


schema = inline(json.load(open(os.path.join(schema_dir, sys.argv[1] + ".json"))))
# The $id ("cwt.status/1") names the document kind; it is no URL. Older jsonschema releases
# (Debian 12's 4.10) resolve "#/$defs/..." against it and try to fetch the result, so the
# references are resolved within the document instead.
schema.pop("$id", None)
raw = open(sys.argv[2], "rb").read()
try:
    text = raw.decode("utf-8")  # strict: invalid UTF-8 fails
    if not text.endswith("\n") or text.count("\n") != 1:
        raise ValueError("not exactly one line")
    doc = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)
except Exception as e:  # any failure is the test's failure, with its reason
    print(f"{sys.argv[2]} against {sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
