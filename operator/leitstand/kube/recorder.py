"""Kubernetes Events for what Leitstand does: queued, scheduled, preempted, failed...

Events are best effort: a failure to record one is logged and never stops a
cycle. Names are unique per event, like the ones client-go's recorder makes.
"""

import datetime
import logging
import secrets

from leitstand.kube.client import ApiError, Body, Client

logger = logging.getLogger("leitstand.events")
COMPONENT = "leitstand"


async def record(client: Client, involved: Body, event_type: str, reason: str, message: str) -> None:
    """Creates one core/v1 Event about ``involved`` (a full object body)."""
    meta = involved["metadata"]
    namespace = meta.get("namespace") or "default"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", ""),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await client.create(f"/api/v1/namespaces/{namespace}/events", body)
    except (ApiError, OSError) as error:
        logger.warning("recording event %s on %s failed: %s", reason, meta["name"], error)
