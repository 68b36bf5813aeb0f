"""Credentials in URIs, hidden in what raygrid writes: MLflow params and artifacts, cache meta.json, Tune's
state, one-line errors. What is *used* keeps the real value (a trial still reads its data with it).

Two forms are common in data URIs:
- userinfo: `https://user:secret@host/...` -> `https://user:***@host/...`;
- secrets in the query string: presigned S3/GCS URLs (`X-Amz-Signature`, `X-Amz-Credential`,
  `X-Amz-Security-Token`, `X-Goog-Signature`), Azure SAS (`sig=`), `?token=`, `access_token=`,
  `api_key=`, `password=` -> `name=***`.
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://user:password@ -- the password ends at the first '@' that precedes the host (no '/' inside).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):(?P<secret>[^/@\s]+)@")
# ?name=value or &name=value where the name says it is a secret; matched case-insensitively.
_QUERY = re.compile(r"(?P<head>[?&;](?:[A-Za-z0-9_.-]*(?:token|signature|secret|password|passwd|credential|"
                    r"api[_-]?key|apikey)|sig|key|auth|code|pwd)=)(?P<secret>[^&#;\s\"']+)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every URI credential replaced by ***; text without one is returned unchanged."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)


def redact_tree(tree: Any) -> Any:
    """A copy of a JSON-like tree (dicts, lists, strings) with every string redacted; other values as they are."""
    if isinstance(tree, str):
        return redact(tree)
    if isinstance(tree, dict):
        return {key: redact_tree(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [redact_tree(value) for value in tree]
    return tree


def has_secret(text: str) -> bool:
    return redact(text) != text
