#!/usr/bin/env python3
"""Validates JSON documents against the official JSON schemas of their formats, as an independent
judge of what xtask renders: CycloneDX 1.5 (SBOMs) and SARIF 2.1.0 (the gate's report).

usage: validate-schema.py SCHEMA_DIR {cyclonedx-1.5|sarif-2.1.0|PATH/TO/SCHEMA.json} FILE...

SCHEMA_DIR holds the schema files scripts/install-test-deps.sh unpacked from the npm packages
@cyclonedx/cyclonedx-library (bom-1.5, spdx, jsf) and @microsoft/jest-sarif (sarif-2.1.0-rtm.5).
References between schemas resolve from that directory only (no network). A schema of the repository
(xtask/schemas/release.schema.json) is named by its path. Exits 1 and prints every violation when a
document is invalid."""
import json
import pathlib
import sys

import jsonschema

MAIN = {"cyclonedx-1.5": "bom-1.5.SNAPSHOT.schema.json", "sarif-2.1.0": "sarif-2.1.0-rtm.5.json"}


def main():
    own = sys.argv[2].endswith(".json") if len(sys.argv) > 2 else False
    if len(sys.argv) < 4 or not (own or sys.argv[2] in MAIN):
        sys.exit(__doc__)
    schema_dir = pathlib.Path(sys.argv[1])
    store = {}
    for path in schema_dir.glob("*.json"):
        doc = json.loads(path.read_text())
        for key in (doc.get("$id"), doc.get("id")):
            if key:
                store[key.rstrip("#")] = doc
                store[key] = doc
    schema = json.loads((pathlib.Path(sys.argv[2]) if own else schema_dir / MAIN[sys.argv[2]]).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    resolver = jsonschema.RefResolver(schema.get("$id", schema.get("id", "")), schema, store=store)
    validator = cls(schema, resolver=resolver, format_checker=jsonschema.FormatChecker())
    failed = False
    for name in sys.argv[3:]:
        errors = sorted(validator.iter_errors(json.loads(pathlib.Path(name).read_text())), key=lambda e: list(e.path))
        for e in errors:
            failed = True
            print(f"{name}: {'/'.join(map(str, e.path)) or '(root)'}: {e.message}")
        if not errors:
            print(f"{name}: valid {sys.argv[2]}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
