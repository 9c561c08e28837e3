"""`/docs` (Swagger UI) and `/redoc`, served only with API_DOCS_ENABLED=true.

Their scripts and styles come from jsDelivr, each pinned to one release and its SHA-384
(Subresource Integrity): a browser runs only the file whose hash is written here, so a
changed or compromised CDN copy is refused, not run next to the page's bearer token. The
hashes are those of the files in the npm packages, which jsDelivr serves byte for byte
(README "Before you expose it" says how to move to another release).
"""

import json
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.36.0"
SWAGGER_UI_JS = "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+"
SWAGGER_UI_CSS = "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc"
REDOC = "https://cdn.jsdelivr.net/npm/redoc@2.5.4"
REDOC_JS = "sha384-w447zOpYfw/1Tv/5AK9NfHTlQIqE3RVR6KY62jCyy9zNDgO64cMwGGP1Fj0zJVf5"

router = APIRouter(include_in_schema=False)


def _script_json(value: object) -> str:
    """`value` as JSON that cannot close the <script> element it is written into."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html>\n<html>\n<head>\n"
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over this service's OpenAPI document; "Authorize" takes a bearer token."""
    options = {
        "url": request.app.openapi_url,
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",
        "deepLinking": True,
        "showExtensions": True,
        "showCommonExtensions": True,
    }
    head = (
        f'<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css"'
        f' integrity="{SWAGGER_UI_CSS}" crossorigin="anonymous">\n'
    )
    body = (
        '<div id="swagger-ui"></div>\n'
        f'<script src="{SWAGGER_UI}/swagger-ui-bundle.js"'
        f' integrity="{SWAGGER_UI_JS}" crossorigin="anonymous"></script>\n'
        f"<script>\nconst options = {_script_json(options)};\n"
        "const bundle = SwaggerUIBundle;\n"
        "options.presets = [bundle.presets.apis, bundle.SwaggerUIStandalonePreset];\n"
        "bundle(options);\n</script>\n"
    )
    return _page(f"{request.app.title} - Swagger UI", head, body)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over this service's OpenAPI document."""
    body = (
        f'<redoc spec-url="{escape(request.app.openapi_url)}"></redoc>\n'
        f'<script src="{REDOC}/bundles/redoc.standalone.js"'
        f' integrity="{REDOC_JS}" crossorigin="anonymous"></script>\n'
    )
    return _page(f"{request.app.title} - ReDoc", "", body)
