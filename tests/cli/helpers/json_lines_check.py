"""json_lines_check.py FILE SCHEMA...: FILE is a JSON Lines stream (train --json, predict --json;
docs/json.md) of strict UTF-8: every line is one JSON object whose "schema" member names one of
the given docs/schemas/SCHEMA.json files (by its $id), and it validates against that schema
(draft 2020-12). Exits 1 with the reason otherwise."""
import json
import os
import sys

import jsonschema

schemas = {}
for name in sys.argv[2:]:
    s = json.load(open(os.path.join(os.environ["CWT_SRC"], "docs", "schemas", name + ".json")))
    jsonschema.Draft202012Validator.check_schema(s)
    # Keyed by its $id, which is then dropped: older jsonschema releases (Debian 12's 4.10)
    # resolve "#/$defs/..." against an $id and try to fetch the result as a URL.
    schemas[s.pop("$id")] = s
try:
    text = open(sys.argv[1], "rb").read().decode("utf-8")  # strict: invalid UTF-8 fails
    if not text.endswith("\n"):
        raise ValueError("the stream does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        doc = json.loads(line)
        if not isinstance(doc, dict) or doc.get("schema") not in schemas:
            raise ValueError(f"line {n}: schema {doc.get('schema')!r} is not one of {list(schemas)}")
        try:
            jsonschema.Draft202012Validator(schemas[doc["schema"]]).validate(doc)
        except jsonschema.ValidationError as e:
            raise ValueError(f"line {n}: {e.message}") from None
except Exception as e:  # any failure is the test's failure, with its reason
    print(f"{sys.argv[1]}: {e}", file=sys.stderr)
    sys.exit(1)
