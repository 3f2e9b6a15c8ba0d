"""The interactive API documentation at ``/docs``, served with its own files.

FastAPI's default page loads Swagger UI from a CDN, so it stays blank where the engine
runs without access to the internet (measured on our build machines: the CDN does not
answer). The files come from the ``fastapi-swagger`` package (Swagger UI 5, which reads
the OpenAPI 3.1 document FastAPI writes) and are served from ``/docs/assets``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"


def serve_docs(app: FastAPI, title: str) -> None:
    """``/docs`` and its files; ``app`` was made with ``docs_url=None``."""
    assets = resources.files("fastapi_swagger") / "resources"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title}: API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )
