"""json_check.py SCHEMA OUTPUT: OUTPUT is one line of strict UTF-8 holding one JSON document that
validates against docs/schemas/SCHEMA.json (draft 2020-12). Exits 1 with the reason otherwise."""
import json
import os
import sys

import jsonschema

schema_path = os.path.join(os.environ["CWT_SRC"], "docs", "schemas", sys.argv[1] + ".json")
schema = json.load(open(schema_path))
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
