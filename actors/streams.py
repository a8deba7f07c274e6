"""Names of the node-local event-log streams the pipeline actors exchange data through.

The log is the bus: producers append in group commits, consumers read after their offset in their own
process and write outputs and their new offset in one durable transaction (exactly once across crashes).
Thespian only carries control.
"""

# a block of readings per record (models/readings.py), or one reading {"sensor", "pollutant", "ts", "value",
# "unit", "location", "source", "ingested_at"}
READINGS = "readings"
PROPOSED_INCIDENTS = "incidents/proposed"  # incident records, possibly duplicated by replays
# {"index", "incident", "raft_index"}: ordered, each incident_id once; on the node whose own proposal was the
# one applied, also "proposed_seq": its seq in that node's incidents/proposed
COMMITTED_INCIDENTS = "incidents/committed"


# The incident type of an entry that records "the leader's dispatcher delivered incidents/committed through
# payload.sinks[S] to each sink S" (actors/dispatch/marks.py): applied into a value, never published. Only the
# dispatcher proposes one: the HTTP API refuses the type (400) and a gateway refuses it on the forward lane,
# or anyone could make the next leader skip dispatching (a mark far ahead).
DISPATCH_MARK = "dispatch_mark"

# {"0.5": s, "0.9": s, "0.99": s} (actors/quantiles.py) of the inference actor at <tree path>: seconds one
# batch of readings takes through features, model and episode tracking, over its recent batches
INFERENCE_LATENCY_PREFIX = "metrics/inference_latency/"


def offset_key(consumer: str) -> str:
    return f"offset/{consumer}"


def dead_letter_stream(component: str) -> str:
    return f"deadletters/{component}"
