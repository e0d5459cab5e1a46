"""Events and feature tables on the device, and the queries over them (see query.py).

Workflow code uses `ctx.events(name)` and `ctx.features(name)`; the host's database comes
from `hosts.default_data_backend()` (hosts/data_base.py describes the interface).
"""

from .device import DeviceData, EventQuery
from .events import EventStore
from .features import FeatureStore, format_age
from .hooks import event_hook, find_hooks
from .query import AGGREGATES, OPERATORS, Grouped, Query, TableRef
from .schema import Column, Declarations, EventTable, FeatureTable

__all__ = [
    "AGGREGATES",
    "Column",
    "Declarations",
    "DeviceData",
    "EventQuery",
    "EventStore",
    "EventTable",
    "FeatureStore",
    "FeatureTable",
    "Grouped",
    "OPERATORS",
    "Query",
    "TableRef",
    "event_hook",
    "find_hooks",
    "format_age",
]
