"""The REST API (``/api/v1``) on the listener's aiohttp app: its route table and OpenAPI document
(spec.py), authentication and scopes (auth.py), the handlers (api.py). It sits above the drills (it
renders their reports) and below the app."""
