"""The PostgreSQL signal protocol: what canary's objects in a datastore write to the server log, and
what the record handlers look for. Both ends import these names, so they are spelled once.

* ``CY001`` (:data:`READ_SQLSTATE`): the touch function, once per canary row returned to a reader.
* ``CY002`` (:data:`TAMPER_SQLSTATE`): the event trigger, for DDL on canary's objects.
* ``CY009`` (:data:`HEARTBEAT_SQLSTATE`): a heartbeat canary logged itself (the dead man's switch).
"""

from __future__ import annotations

READ_SQLSTATE = "CY001"
TAMPER_SQLSTATE = "CY002"
HEARTBEAT_SQLSTATE = "CY009"
HEARTBEAT_MESSAGE = "canary heartbeat"
#: The touch function's default name (configurable per datastore: ``detection_function``).
FUNCTION = "row_visible"
#: The function's name in canary 0.x deployments (dropped when ``canary seed`` upgrades them).
LEGACY_FUNCTION = "row_access"
#: The message of its lines (the detail holds the facts, the hint their MAC).
LOG_MESSAGE = "row visibility"
#: application_name prefix that tags drill traffic (``canary-drill:<run>/<step>``).
DRILL_APP_PREFIX = "canary-drill:"
