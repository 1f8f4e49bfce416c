"""Model presets: the catalog, its validation, status and the download engine."""

import sys

# jsonschema imports rfc3987_syntax when it is installed (JupyterLab pulls it in through
# jupyter-events), and that module builds a grammar for 2-9 s at import. The catalog schema checks
# no IRI formats, so make that import a quick miss in every process that loads the catalog.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
