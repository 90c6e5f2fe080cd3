"""Python client for statemanager, the drop-in replacement of the Opsview State Manager.

Porting a plugnpy plugin is a change of import::

    from plugnpy.statemanager import StateManagerUtils       # before
    from statemanager import StateManagerUtils               # after

``StateManagerUtils``, ``StateManagerClient`` and ``StateManagerStoreError`` behave as
plugnpy's (same arguments, environment variables, return values and error texts); the
extras are HTTPS with client certificates, timeouts, ``delete_data``, ``fetch_item``,
``store_json``/``fetch_json`` and ``store_data(..., retry_on_conflict=N)``.
Standard library only.
"""

from .client import DEFAULT_TIMEOUT, StateManagerClient, StateManagerUtils, StoredItem
from .exception import StateManagerStoreError

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "StateManagerClient",
    "StateManagerStoreError",
    "StateManagerUtils",
    "StoredItem",
    "__version__",
]
