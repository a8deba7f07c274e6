"""The city's sensing pipeline, as actor kinds: simulated sensors and the MQTT bridge (readings in),
inference (readings -> proposed incidents) and the single-node incident log. The Raft incident log, CRDT
exposure replicas and dispatchers have packages of their own (``actors.raft``, ``actors.crdt``,
``actors.dispatch``); the runtime kernel every actor uses is the rest of ``actors`` (``base``,
``messages``, ``eventlog``, ``wakeups``, ``names``, ``args``, ``logs``, ``streams``)."""
