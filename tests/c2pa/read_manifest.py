"""Reads a file's C2PA manifest with c2pa's own Python package (c2pa-python) and prints what it found as JSON:
{"state": ..., "signer": ..., "assertions": [...], "failures": [...]} — or {"state": "Absent"} when the file has
no manifest. Used by the Rust tests to show that vidmesh's manifests are readable by the reference SDK.

Usage: python read_manifest.py FILE
"""

import json
import sys

import c2pa


def main(path: str) -> None:
    try:
        reader = c2pa.Reader(path)
    except c2pa.C2paError as e:
        # The SDK reports a file without a manifest as an error ("ManifestNotFound" / "JumbfNotFound").
        text = str(e)
        if "NotFound" in text or "not found" in text.lower():
            print(json.dumps({"state": "Absent", "detail": text}))
            return
        raise
    store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    info = manifest.get("signature_info", {})
    failures = [s.get("code") for s in store.get("validation_status", []) or []]
    print(
        json.dumps(
            {
                "state": reader.get_validation_state(),
                "signer": " / ".join(x for x in (info.get("common_name"), info.get("issuer")) if x),
                "assertions": [a["label"] for a in manifest.get("assertions", [])],
                "failures": failures,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
