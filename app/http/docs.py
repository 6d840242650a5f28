"""Swagger UI at /docs, served from the vendored Swagger UI 5 files in app/static/swagger-ui/.

FastAPI's default /docs page loads its JavaScript and CSS from a CDN; our machines cannot reach it,
so the page would stay blank. `create_app` passes `docs_url=None` and calls `mount_swagger_ui`
instead.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"
STATIC_PREFIX = "/static/swagger-ui"
DOCS_PATH = "/docs"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """The page's policy: its own assets, its one inline start-up script by hash, nothing else."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


def mount_swagger_ui(app: FastAPI) -> None:
    """Serve the Swagger UI assets under /static/swagger-ui/ and the page itself at /docs."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")

    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a path-prefixing proxy every URL the page loads must carry the prefix.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PREFIX}/favicon-32x32.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        html = bytes(page.body).decode()
        page.headers["Content-Security-Policy"] = content_security_policy(html)
        return page

    app.add_api_route(DOCS_PATH, swagger_ui, methods=["GET"], include_in_schema=False)
