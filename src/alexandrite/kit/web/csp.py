"""The Content-Security-Policy of the server-rendered pages.

Scripts run only from this origin's files; the one inline script, the import map of the 3D preview
(browsers cannot load an import map from a file), is allowed by its SHA-256 hash. No inline event
handlers, no ``eval`` (htmx's is switched off by its ``htmx-config`` meta tag), no plugins, no
``<base>``, no framing, forms post only here. Styles come from this origin's files only.
"""

from __future__ import annotations

import base64
import hashlib
import json

# The import map of every page with a 3D preview; its hash is part of the policy, so it never changes
# per request (templates print it exactly as it is here).
IMPORT_MAP = json.dumps({"imports": {"three": "/static/vendor/three/three.module.js",
                                     "three/addons/": "/static/vendor/three/addons/"}})
# htmx settings, read by htmx from <meta name="htmx-config">: no eval, no inline <style>, no <script> in swaps.
HTMX_CONFIG = json.dumps({"allowEval": False, "allowScriptTags": False, "includeIndicatorStyles": False})


def script_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


PAGE_POLICY = "; ".join([
    "default-src 'self'",
    f"script-src 'self' {script_hash(IMPORT_MAP)}",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
])
