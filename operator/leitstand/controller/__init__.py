"""The live operator: kopf handlers that feed the store, the scheduling loop, leader election."""
