"""The venue's one error table, as the engine, settlement and the gateway import it.

``CrowdexError`` and ``STATUS_BY_CODE`` are defined in ``boards/errors.py``, the leaf at the
bottom of the layers, so that the rules can raise them without importing the engine; this module
re-exports them unchanged (the same class and the same table, not copies), so a code is added
once, there.
"""

from __future__ import annotations

from boards.errors import OTHER_STATUSES, STATUS_BY_CODE, CrowdexError, status_allowed

__all__ = ["OTHER_STATUSES", "STATUS_BY_CODE", "CrowdexError", "status_allowed"]
