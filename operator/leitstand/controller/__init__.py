"""The live operator: kopf for the process, informers that feed the store, the scheduling loop, leader election."""
