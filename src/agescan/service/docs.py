"""``/docs``: the OpenAPI description as a plain HTML page (no script, no third-party files: works offline)."""

from __future__ import annotations

import html
import json


def _schema_text(schema: dict) -> str:
    if not schema:
        return ""
    kind = schema.get("type") or " | ".join(s.get("type", "?") for s in schema.get("anyOf", []))
    bounds = [f"{k} {schema[k]}" for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum") if k in schema]
    default = f", default {json.dumps(schema['default'])}" if "default" in schema else ""
    return f"{kind}{' (' + ', '.join(bounds) + ')' if bounds else ''}{default}"


def render(spec: dict) -> str:
    """The page for an OpenAPI ``spec``: each operation with its parameters, body types and responses."""
    e = html.escape
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(spec['info']['title'])} API</title>"
           "<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
           "code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;"
           "padding:3px 8px;text-align:left;vertical-align:top}h2{margin-top:2em}</style></head><body>",
           f"<h1>{e(spec['info']['title'])} {e(spec['info']['version'])}: HTTP API</h1>",
           f"<p>{e(spec['info'].get('description', ''))}</p><p>Machine-readable: <a href='/openapi.json'>"
           "openapi.json</a>. Errors are JSON: <code>{\"error\": {\"status\", \"code\", \"message\"}}</code>.</p>"]
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            out.append(f"<h2><code>{e(method.upper())} {e(path)}</code></h2><p><b>{e(op.get('summary', ''))}</b></p>")
            if op.get("description"):
                out.append(f"<p>{e(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                out.append("<table><tr><th>query parameter</th><th>type</th><th>meaning</th></tr>")
                for p in params:
                    req = " (required)" if p.get("required") else ""
                    out.append(f"<tr><td><code>{e(p['name'])}</code>{req}</td><td>{e(_schema_text(p.get('schema', {})))}"
                               f"</td><td>{e(p.get('description', '') or p.get('schema', {}).get('description', ''))}"
                               "</td></tr>")
                out.append("</table>")
            body = op.get("requestBody", {}).get("content", {})
            if body:
                out.append(f"<p>Body: {', '.join(f'<code>{e(t)}</code>' for t in body)}</p>")
                form = body.get("multipart/form-data", {}).get("schema", {}).get("properties", {})
                if form:
                    out.append("<ul>" + "".join(f"<li><code>{e(k)}</code>: {e(v.get('description', ''))}</li>"
                                                for k, v in form.items()) + "</ul>")
            codes = ", ".join(f"{e(str(c))} {e(r.get('description', ''))}" for c, r in op.get("responses", {}).items())
            out.append(f"<p>Responses: {codes}</p>")
    out.append("</body></html>")
    return "".join(out)
