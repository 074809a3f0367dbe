"""The REST API (``/api/v1``) and the console (server-rendered pages at ``/``) on the listener's aiohttp app:
the API's route table and OpenAPI document (spec.py), authentication, scopes, browser sessions and CSRF
(auth.py), the API's handlers (api.py), the console's pages (console.py) over those handlers, their HTML
and timeline SVG (render.py) and one stylesheet and script (static/). It sits above the drills (it renders
their reports) and below the app."""
