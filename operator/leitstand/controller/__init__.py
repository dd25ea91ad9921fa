"""The live operator: kopf handlers and informers that feed the store, the scheduling loop, leader election."""
